import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router-dom";
import { api, formatMoney, type Plan, type Schemas, unwrap } from "../api/client";
import { useAuth } from "../auth/AuthProvider";
import { ConfirmDialog } from "../components/Dialog";

type PlanKey = Schemas["CheckoutRequest"]["plan"];

const limit = (value: number | null | undefined, unit = "") =>
  value == null ? "Unlimited" : `${value.toLocaleString()}${unit}`;

const ROWS: [string, (plan: Plan) => string][] = [
  ["Messages per month", (p) => limit(p.limits.messages_per_month)],
  ["Projects", (p) => limit(p.limits.projects)],
  ["Documents", (p) => limit(p.limits.documents)],
  ["Storage", (p) => limit(p.limits.storage_mb, " MB")],
  ["Largest file", (p) => `${p.limits.max_upload_mb} MB`],
  ["Artifact versions kept", (p) => limit(p.limits.artifact_versions)],
  ["Models", (p) => p.limits.models.join(", ")],
];

/** The plans from GET /api/billing/plans; buying goes to Stripe Checkout (a redirect to
 * the URL the API returns, so no Stripe script is loaded at all). */
export function PricingPage() {
  const { user } = useAuth();
  const [error, setError] = useState<string | null>(null);
  const [changeTo, setChangeTo] = useState<Plan | null>(null);
  const plans = useQuery({
    queryKey: ["plans"],
    queryFn: async () => unwrap(await api.GET("/api/billing/plans")),
  });
  const subscription = useQuery({
    queryKey: ["subscription"],
    enabled: Boolean(user),
    queryFn: async () => unwrap(await api.GET("/api/billing/subscription")),
  });
  const current = subscription.data;
  const paying = current ? current.status !== "none" && current.status !== "canceled" : false;
  const checkout = useMutation({
    mutationFn: async (plan: PlanKey) =>
      unwrap(await api.POST("/api/billing/checkout-session", { body: { plan } })),
    onSuccess: (redirect) => window.location.assign(redirect.url),
    onError: (failure: Error) => setError(failure.message),
  });
  const change = useMutation({
    mutationFn: async (plan: PlanKey) =>
      unwrap(await api.POST("/api/billing/change-plan", { body: { plan } })),
    onSuccess: () => void subscription.refetch(),
    onError: (failure: Error) => setError(failure.message),
  });

  const action = (plan: Plan) => {
    if (!user) {
      return (
        <Link className="button primary" to="/register?next=/pricing">
          Get started
        </Link>
      );
    }
    if (current?.plan === plan.key) {
      return (
        <button type="button" disabled>
          Your plan
        </button>
      );
    }
    if (plan.contact_url) {
      return (
        <a className="button" href={plan.contact_url}>
          Contact us
        </a>
      );
    }
    if (paying) {
      return (
        <button
          type="button"
          onClick={() => setChangeTo(plan)}
          disabled={!plan.purchasable && plan.key !== "free"}
        >
          Switch to {plan.name}
        </button>
      );
    }
    if (!plan.purchasable) return null;
    return (
      <button
        type="button"
        className="primary"
        disabled={checkout.isPending}
        onClick={() => checkout.mutate(plan.key as PlanKey)}
        aria-label={`Get started with ${plan.name}`}
      >
        Get started
      </button>
    );
  };

  return (
    <div className="page wide">
      <h1>Plans</h1>
      <p className="hint">Every plan includes cited answers from your own documents.</p>
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      {plans.isError && (
        <p className="error-banner" role="alert">
          {(plans.error as Error).message}
        </p>
      )}
      <ul className="plan-grid">
        {plans.data?.map((plan) => (
          <li key={plan.key} className={`card plan${current?.plan === plan.key ? " current" : ""}`}>
            <h2>{plan.name}</h2>
            <p className="price">
              {formatMoney(plan.price_cents, plan.currency)}
              <span className="hint"> / month</span>
            </p>
            <ul className="plan-points">
              <li>{limit(plan.limits.messages_per_month)} messages a month</li>
              <li>{limit(plan.limits.projects)} projects</li>
              <li>{limit(plan.limits.storage_mb, " MB")} of documents</li>
            </ul>
            {action(plan)}
          </li>
        ))}
      </ul>
      {plans.data && (
        <div className="table-scroll">
          <table className="comparison">
            <caption className="visually-hidden">Plans compared</caption>
            <thead>
              <tr>
                <th scope="col">Feature</th>
                {plans.data.map((plan) => (
                  <th scope="col" key={plan.key}>
                    {plan.name}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {ROWS.map(([label, value]) => (
                <tr key={label}>
                  <th scope="row">{label}</th>
                  {plans.data.map((plan) => (
                    <td key={plan.key}>{value(plan)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ConfirmDialog
        open={changeTo !== null}
        title={`Switch to ${changeTo?.name}?`}
        message={
          changeTo?.key === "free"
            ? "Your subscription ends at the end of the period you paid for."
            : "Stripe prorates the change: an upgrade is invoiced now, a downgrade is credited on the next invoice."
        }
        confirmLabel={`Switch to ${changeTo?.name}`}
        onCancel={() => setChangeTo(null)}
        onConfirm={() => {
          if (changeTo) change.mutate(changeTo.key as PlanKey);
          setChangeTo(null);
        }}
      />
    </div>
  );
}

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, useState } from "react";
import { Link } from "react-router-dom";
import { ChangePasswordForm } from "../account/ChangePasswordForm";
import { type Account, api, formatMoney, unwrap } from "../api/client";
import { ConfirmDialog } from "../components/Dialog";

// The chart is its own chunk: the first page load does not carry it.
const DailyUsageChart = lazy(() => import("../account/DailyUsageChart"));

const date = (value: string | null | undefined) =>
  value ? new Date(value).toLocaleDateString() : "—";

function UsageBar({
  label,
  item,
  unit = "",
}: {
  label: string;
  item: Account["usage"]["messages"];
  unit?: string;
}) {
  const limitText = item.limit == null ? "no limit" : `${item.limit.toLocaleString()}${unit}`;
  return (
    <div className="usage">
      <div className="usage-head">
        <span>{label}</span>
        <span className="hint">
          {item.used.toLocaleString()}
          {unit} of {limitText}
        </span>
      </div>
      {item.limit != null && (
        <meter
          min={0}
          max={item.limit}
          value={item.used}
          high={item.limit * 0.8}
          optimum={0}
          aria-label={`${label}: ${item.used} of ${limitText}`}
        />
      )}
    </div>
  );
}

/** Plan, renewal or end date, usage this period (with a daily chart), billing actions and
 * history, password change. */
export function AccountPage() {
  const queryClient = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const [confirmCancel, setConfirmCancel] = useState(false);
  const account = useQuery({
    queryKey: ["account"],
    queryFn: async () => unwrap(await api.GET("/api/account")),
  });
  const paying = account.data
    ? !["none", "canceled"].includes(account.data.subscription.status)
    : false;
  const invoices = useQuery({
    queryKey: ["invoices"],
    enabled: paying,
    queryFn: async () => unwrap(await api.GET("/api/billing/invoices")),
  });
  const portal = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/billing/portal-session")),
    onSuccess: (redirect) => window.location.assign(redirect.url),
    onError: (failure: Error) => setError(failure.message),
  });
  const cancel = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/billing/cancel")),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ["account"] }),
    onError: (failure: Error) => setError(failure.message),
  });

  const data = account.data;
  if (account.isError)
    return <p className="page error-banner">{(account.error as Error).message}</p>;
  if (!data) return <p className="page">Loading…</p>;
  const sub = data.subscription;
  return (
    <div className="page">
      <h1>Account</h1>
      <p className="hint">{data.email}</p>
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      <section className="card" aria-labelledby="plan-heading">
        <h2 id="plan-heading">
          Plan: <span data-testid="plan-name">{sub.plan_name}</span>
        </h2>
        <p>
          {sub.status === "none"
            ? "The free plan."
            : sub.cancel_at_period_end
              ? `Cancelled: ends on ${date(sub.current_period_end)}.`
              : `Renews on ${date(sub.current_period_end)} (${sub.status}).`}
        </p>
        <div className="row-actions wrap">
          <Link className="button primary" to="/pricing">
            {paying ? "Change plan" : "Upgrade"}
          </Link>
          {paying && (
            <button type="button" onClick={() => portal.mutate()} disabled={portal.isPending}>
              Manage billing
            </button>
          )}
          {paying && !sub.cancel_at_period_end && (
            <button type="button" className="danger" onClick={() => setConfirmCancel(true)}>
              Cancel subscription
            </button>
          )}
        </div>
      </section>
      <section className="card" aria-labelledby="usage-heading">
        <h2 id="usage-heading">Usage this period</h2>
        <p className="hint">The message counter starts again on {date(data.reset_at)}.</p>
        <UsageBar label="Messages" item={data.usage.messages} />
        <UsageBar label="Projects" item={data.usage.projects} />
        <UsageBar label="Documents" item={data.usage.documents} />
        <UsageBar label="Storage" item={data.usage.storage_mb} unit=" MB" />
        <p className="hint">
          Model tokens this period: {data.usage.input_tokens.toLocaleString()} in,{" "}
          {data.usage.output_tokens.toLocaleString()} out.
        </p>
        <h3>Messages per day</h3>
        <Suspense fallback={<p className="hint">Loading the daily chart…</p>}>
          <DailyUsageChart />
        </Suspense>
      </section>
      {paying && (
        <section className="card" aria-labelledby="invoices-heading">
          <h2 id="invoices-heading">Billing history</h2>
          {invoices.isError && <p className="error-text">{(invoices.error as Error).message}</p>}
          {invoices.data?.length === 0 && <p className="empty">No invoices yet.</p>}
          {invoices.data && invoices.data.length > 0 && (
            <div className="table-scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Date</th>
                    <th scope="col">Amount</th>
                    <th scope="col">Status</th>
                    <th scope="col">Invoice</th>
                  </tr>
                </thead>
                <tbody>
                  {invoices.data.map((invoice) => (
                    <tr key={invoice.id}>
                      <td>{date(invoice.created)}</td>
                      <td>{formatMoney(invoice.amount_due, invoice.currency)}</td>
                      <td>{invoice.status}</td>
                      <td>
                        {invoice.hosted_invoice_url ? (
                          <a href={invoice.hosted_invoice_url}>{invoice.number ?? "View"}</a>
                        ) : (
                          invoice.number
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
      <section className="card" aria-labelledby="password-heading">
        <h2 id="password-heading">Change password</h2>
        <ChangePasswordForm />
      </section>
      <ConfirmDialog
        open={confirmCancel}
        title="Cancel your subscription?"
        message={`You keep ${sub.plan_name} until ${date(sub.current_period_end)}; then the account moves to the free plan. Your projects and documents are kept.`}
        confirmLabel="Cancel subscription"
        onCancel={() => setConfirmCancel(false)}
        onConfirm={() => {
          setConfirmCancel(false);
          cancel.mutate();
        }}
      />
    </div>
  );
}

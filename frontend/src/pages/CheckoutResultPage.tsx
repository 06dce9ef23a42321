import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { api, unwrap } from "../api/client";

/** Back from Stripe Checkout. The plan changes when Stripe's webhook reaches the API
 * (usually within seconds), so the subscription is polled until it shows. */
export function CheckoutResultPage({ outcome }: { outcome: "success" | "cancel" }) {
  const subscription = useQuery({
    queryKey: ["subscription", "after-checkout"],
    enabled: outcome === "success",
    queryFn: async () => unwrap(await api.GET("/api/billing/subscription")),
    refetchInterval: (query) =>
      query.state.data?.status === "none" && query.state.dataUpdateCount < 30 ? 1000 : false,
  });
  if (outcome === "cancel") {
    return (
      <div className="page narrow">
        <h1>Checkout cancelled</h1>
        <p>Nothing was charged and your plan is unchanged.</p>
        <Link className="button" to="/pricing">
          Back to the plans
        </Link>
      </div>
    );
  }
  const active = subscription.data && subscription.data.status !== "none";
  return (
    <div className="page narrow">
      <h1>{active ? `Welcome to ${subscription.data?.plan_name}` : "Thank you!"}</h1>
      <p role="status">
        {active
          ? `Your ${subscription.data?.plan_name} plan is active until ${new Date(subscription.data?.current_period_end ?? "").toLocaleDateString()}.`
          : "Your payment went through; your plan is being switched on…"}
      </p>
      <p className="row-actions">
        <Link className="button primary" to="/chat">
          Start chatting
        </Link>
        <Link className="button" to="/account">
          Your account
        </Link>
      </p>
    </div>
  );
}

import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { type LimitReached, onLimitReached } from "../api/session";
import { Dialog } from "./Dialog";

const LIMIT_NAMES: Record<string, string> = {
  messages_per_month: "messages this month",
  projects: "projects",
  documents: "documents",
  storage_mb: "storage (MB)",
  max_upload_mb: "file size (MB)",
  artifact_versions: "artifact versions",
};

/** Shown wherever a plan limit answers 402: what ran out, and the way to more. */
export function UpgradePrompt() {
  const [limit, setLimit] = useState<LimitReached | null>(null);
  useEffect(() => onLimitReached(setLimit), []);
  const close = () => setLimit(null);
  return (
    <Dialog open={limit !== null} title="You have reached a limit of your plan" onClose={close}>
      <p>{limit?.detail}</p>
      {limit?.limit_value != null && (
        <p className="hint">
          {LIMIT_NAMES[limit.limit] ?? limit.limit}: {limit.usage} of {limit.limit_value} used
          {limit.reset_at ? `, resets ${new Date(limit.reset_at).toLocaleDateString()}` : ""}.
        </p>
      )}
      <div className="dialog-actions">
        <button type="button" onClick={close}>
          Not now
        </button>
        <Link className="button primary" to="/pricing" onClick={close}>
          See plans
        </Link>
      </div>
    </Dialog>
  );
}

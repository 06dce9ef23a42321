import { useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, type Schemas, unwrap } from "../api/client";
import { useAuth } from "../auth/AuthProvider";
import { CopyButton } from "../components/CopyButton";

type Invitation = Schemas["InvitationRead"];

/** What the API offers administrators today: invitations (for REGISTRATION_MODE
 * invite-only, usable in every mode). */
export function AdminPage() {
  const { user } = useAuth();
  const [error, setError] = useState<string | null>(null);
  const [invitations, setInvitations] = useState<Invitation[]>([]);
  const invite = useMutation({
    mutationFn: async (email: string) =>
      unwrap(await api.POST("/api/invitations", { body: { email } })),
    onSuccess: (invitation) => {
      setError(null);
      setInvitations((list) => [invitation, ...list]);
    },
    onError: (failure: Error) => setError(failure.message),
  });
  if (!user?.is_admin) {
    return (
      <div className="page">
        <h1>Administration</h1>
        <p className="error-banner" role="alert">
          Only administrators can open this page.
        </p>
      </div>
    );
  }
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    invite.mutate(String(new FormData(form).get("email")), { onSuccess: () => form.reset() });
  };
  return (
    <div className="page">
      <h1>Administration</h1>
      <section className="card" aria-labelledby="invite-heading">
        <h2 id="invite-heading">Invite someone</h2>
        <p className="hint">
          The link lets one person sign up with this address, also when registration is invite-only.
          Send it to them yourself.
        </p>
        {error && (
          <p className="error-banner" role="alert">
            {error}
          </p>
        )}
        <form className="inline-form" onSubmit={submit}>
          <label>
            E-mail address
            <input name="email" type="email" required />
          </label>
          <button type="submit" className="primary" disabled={invite.isPending}>
            Create invitation
          </button>
        </form>
        {invitations.length > 0 && (
          <ul className="card-list" aria-label="Invitations">
            {invitations.map((invitation) => (
              <li key={invitation.token} className="invitation">
                <strong>{invitation.email}</strong>
                <span className="hint">
                  {" "}
                  valid until {new Date(invitation.expires_at).toLocaleString()}
                </span>
                <div className="row-actions">
                  <input
                    readOnly
                    value={invitation.register_url}
                    aria-label={`Sign-up link for ${invitation.email}`}
                  />
                  <CopyButton text={() => invitation.register_url} label="Copy link" />
                </div>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

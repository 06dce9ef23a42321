import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, type Schemas, unwrap } from "../api/client";
import { useAuth } from "../auth/AuthProvider";
import { CopyButton } from "../components/CopyButton";
import { ConfirmDialog } from "../components/Dialog";

type Invitation = Schemas["InvitationRead"];
type AdminUser = Schemas["AdminUserRead"];

const PAGE_SIZE = 50;
const MODES: Record<string, string> = {
  open: "Open: anybody can sign up.",
  "invite-only": "Invite-only: only people with an invitation link can sign up.",
  closed: "Closed: nobody can sign up; accounts are made with `knowledgetree create-admin`.",
};

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MiB`;
}

/** Users: search by address, plan and usage, disable/enable (not oneself). */
function UsersSection({ selfId }: { selfId: string }) {
  const queryClient = useQueryClient();
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<AdminUser | null>(null);
  const users = useQuery({
    queryKey: ["admin", "users", search, page],
    placeholderData: keepPreviousData,
    queryFn: async () =>
      unwrap(
        await api.GET("/api/admin/users", {
          params: { query: { q: search || undefined, limit: PAGE_SIZE, offset: page * PAGE_SIZE } },
        }),
      ),
  });
  const setActive = useMutation({
    mutationFn: async ({ id, active }: { id: string; active: boolean }) =>
      unwrap(
        await api.PATCH("/api/admin/users/{user_id}", {
          params: { path: { user_id: id } },
          body: { is_active: active },
        }),
      ),
    onSuccess: () => {
      setError(null);
      void queryClient.invalidateQueries({ queryKey: ["admin", "users"] });
    },
    onError: (failure: Error) => setError(failure.message),
  });
  const total = users.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  return (
    <section className="card" aria-labelledby="users-heading">
      <h2 id="users-heading">Users</h2>
      <search>
        <form
          className="inline-form"
          onSubmit={(event) => {
            event.preventDefault();
            setPage(0);
            setSearch(String(new FormData(event.currentTarget).get("q") ?? "").trim());
          }}
        >
          <label>
            Search by e-mail
            <input name="q" type="search" maxLength={320} />
          </label>
          <button type="submit">Search</button>
        </form>
      </search>
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      {users.isError && <p className="error-text">{(users.error as Error).message}</p>}
      {users.data && users.data.items.length === 0 && <p className="empty">No users found.</p>}
      {users.data && users.data.items.length > 0 && (
        <div className="table-scroll">
          <table aria-label="Users">
            <thead>
              <tr>
                <th scope="col">E-mail</th>
                <th scope="col">Plan</th>
                <th scope="col">Messages this period</th>
                <th scope="col">Documents</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.data.items.map((user) => (
                <tr key={user.id}>
                  <th scope="row">
                    {user.email}
                    {user.is_admin && <span className="badge">admin</span>}
                  </th>
                  <td>{user.plan}</td>
                  <td>
                    {user.messages_used.toLocaleString()}
                    {user.messages_limit != null && ` of ${user.messages_limit.toLocaleString()}`}
                  </td>
                  <td>
                    {user.documents} ({mib(user.storage_bytes)})
                  </td>
                  <td>{user.is_active ? "Active" : "Disabled"}</td>
                  <td>
                    {user.id !== selfId &&
                      (user.is_active ? (
                        <button
                          type="button"
                          className="danger"
                          aria-label={`Disable ${user.email}`}
                          onClick={() => setConfirm(user)}
                        >
                          Disable
                        </button>
                      ) : (
                        <button
                          type="button"
                          aria-label={`Enable ${user.email}`}
                          disabled={setActive.isPending}
                          onClick={() => setActive.mutate({ id: user.id, active: true })}
                        >
                          Enable
                        </button>
                      ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pages > 1 && (
        <div className="row-actions">
          <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>
            Previous
          </button>
          <span className="hint">
            Page {page + 1} of {pages} ({total} users)
          </span>
          <button type="button" disabled={page + 1 >= pages} onClick={() => setPage(page + 1)}>
            Next
          </button>
        </div>
      )}
      <ConfirmDialog
        open={confirm !== null}
        title={`Disable ${confirm?.email ?? ""}?`}
        message="They are logged out everywhere and cannot log in until you enable the account again. Nothing of theirs is deleted."
        confirmLabel="Disable"
        onCancel={() => setConfirm(null)}
        onConfirm={() => {
          if (confirm) setActive.mutate({ id: confirm.id, active: false });
          setConfirm(null);
        }}
      />
    </section>
  );
}

function RegistrationSection() {
  const registration = useQuery({
    queryKey: ["admin", "registration"],
    queryFn: async () => unwrap(await api.GET("/api/admin/registration")),
  });
  return (
    <section className="card" aria-labelledby="registration-heading">
      <h2 id="registration-heading">Registration</h2>
      {registration.isError && (
        <p className="error-text">{(registration.error as Error).message}</p>
      )}
      {registration.data && <p data-testid="registration-mode">{MODES[registration.data.mode]}</p>}
      <p className="hint">
        Set by REGISTRATION_MODE in the server's configuration (the inventory's
        app_registration_mode); a redeploy applies a change.
      </p>
    </section>
  );
}

function FailedDocumentsSection() {
  const failed = useQuery({
    queryKey: ["admin", "failed-documents"],
    queryFn: async () => unwrap(await api.GET("/api/admin/documents/failed")),
  });
  return (
    <section className="card" aria-labelledby="failed-heading">
      <h2 id="failed-heading">Documents that failed</h2>
      {failed.isError && <p className="error-text">{(failed.error as Error).message}</p>}
      {failed.data?.length === 0 && <p className="empty">No document has failed.</p>}
      {failed.data && failed.data.length > 0 && (
        <div className="table-scroll">
          <table aria-label="Documents that failed">
            <thead>
              <tr>
                <th scope="col">Document</th>
                <th scope="col">Owner</th>
                <th scope="col">Project</th>
                <th scope="col">Reason</th>
                <th scope="col">When</th>
              </tr>
            </thead>
            <tbody>
              {failed.data.map((document) => (
                <tr key={document.id}>
                  <th scope="row">{document.filename}</th>
                  <td>{document.owner_email}</td>
                  <td>{document.project_name}</td>
                  <td>{document.error ?? "—"}</td>
                  <td>{new Date(document.updated_at).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Users, registration mode, invitations and failed documents (admins only). */
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
      <UsersSection selfId={user.id} />
      <RegistrationSection />
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
      <FailedDocumentsSection />
    </div>
  );
}

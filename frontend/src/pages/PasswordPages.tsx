import { type FormEvent, type ReactNode, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../api/client";
import { Logo } from "../components/Logo";

function AuthCard({ title, children }: { title: string; children: ReactNode }) {
  return (
    <main className="auth-page" id="main">
      <div className="card auth-card">
        <h1>
          <Logo size={30} /> KnowledgeTree
        </h1>
        <h2>{title}</h2>
        {children}
      </div>
    </main>
  );
}

/** "Forgot your password?": the API mails a single-use link (same answer for any address). */
export function ForgotPasswordPage() {
  const [sent, setSent] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const email = String(new FormData(event.currentTarget).get("email"));
    try {
      unwrap(await api.POST("/api/auth/password-reset", { body: { email } }));
      setSent(true);
    } catch (failure) {
      setError((failure as Error).message);
    }
  };
  return (
    <AuthCard title="Reset your password">
      {sent ? (
        <p role="status">
          If an account uses this address, a link to set a new password is on its way. It works
          once.
        </p>
      ) : (
        <form className="auth-form" onSubmit={submit}>
          {error && (
            <p className="error-banner" role="alert">
              {error}
            </p>
          )}
          <label>
            E-mail
            <input name="email" type="email" autoComplete="email" required />
          </label>
          <button type="submit" className="primary">
            Send the link
          </button>
        </form>
      )}
      <p className="hint">
        <Link to="/login">Back to log in</Link>
      </p>
    </AuthCard>
  );
}

/** The e-mailed link: a new password with its token; every session ends, so log in again. */
export function ResetPasswordPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  const token = params.get("token") ?? "";
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const password = String(new FormData(event.currentTarget).get("password"));
    try {
      unwrap(
        await api.POST("/api/auth/password-reset/confirm", {
          body: { token, new_password: password },
        }),
      );
      navigate("/login?reset=1", { replace: true });
    } catch (failure) {
      setError((failure as Error).message);
    }
  };
  return (
    <AuthCard title="Set a new password">
      <form className="auth-form" onSubmit={submit}>
        {error && (
          <p className="error-banner" role="alert">
            {error}
          </p>
        )}
        <label>
          New password
          <input
            name="password"
            type="password"
            autoComplete="new-password"
            minLength={10}
            required
          />
        </label>
        <p className="hint">At least 10 characters.</p>
        <button type="submit" className="primary" disabled={!token}>
          Set the password
        </button>
      </form>
    </AuthCard>
  );
}

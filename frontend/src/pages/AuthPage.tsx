import { type FormEvent, useState } from "react";
import { Link, Navigate, useNavigate, useSearchParams } from "react-router-dom";
import { useAuth } from "../auth/AuthProvider";
import { Logo } from "../components/Logo";

/** Log in or sign up; afterwards back to `?next=` (where an expired session left off). */
export function AuthPage({ mode }: { mode: "login" | "register" }) {
  const { user, login, register } = useAuth();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const next = params.get("next");
  const invitation = params.get("invitation"); // from an administrator's invitation link
  const target = next?.startsWith("/") && !next.startsWith("//") ? next : "/chat";
  if (user) return <Navigate to={target} replace />;

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const email = String(form.get("email"));
      const password = String(form.get("password"));
      await (mode === "login" ? login(email, password) : register(email, password, invitation));
      navigate(target, { replace: true });
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const isLogin = mode === "login";
  return (
    <main className="auth-page" id="main">
      <form className="card auth-card" onSubmit={submit}>
        <h1>
          <Logo size={30} /> KnowledgeTree
        </h1>
        <h2>{isLogin ? "Log in" : "Create an account"}</h2>
        {params.get("reset") && isLogin && (
          <p className="notice" role="status">
            Your new password is set. Log in with it.
          </p>
        )}
        {params.get("expired") && isLogin && (
          <p className="notice" role="status">
            Your session has ended. Log in to continue where you were.
          </p>
        )}
        {invitation && !isLogin && (
          <p className="notice" role="status">
            You were invited: sign up with the e-mail address the invitation was sent to.
          </p>
        )}
        {error && (
          <p className="error-banner" role="alert">
            {error}
          </p>
        )}
        <label>
          E-mail
          <input name="email" type="email" autoComplete="email" required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={isLogin ? "current-password" : "new-password"}
            minLength={isLogin ? 1 : 10}
            required
            aria-describedby={isLogin ? undefined : "password-hint"}
          />
        </label>
        {!isLogin && (
          <p id="password-hint" className="hint">
            At least 10 characters.
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {isLogin ? "Log in" : "Sign up"}
        </button>
        <p className="hint">
          {isLogin ? (
            <>
              <Link to="/forgot-password">Forgot your password?</Link>
              <br />
              No account yet?{" "}
              <Link to={`/register${next ? `?next=${encodeURIComponent(next)}` : ""}`}>
                Sign up
              </Link>
            </>
          ) : (
            <>
              Have an account? <Link to="/login">Log in</Link>
            </>
          )}
        </p>
      </form>
    </main>
  );
}

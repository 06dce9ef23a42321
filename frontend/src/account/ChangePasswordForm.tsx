// "Change password" on the account page. The API ends every other session and answers a
// new token pair for this one, which replaces the stored pair.
import { type FormEvent, useState } from "react";
import { api, unwrap } from "../api/client";
import { saveTokens } from "../api/session";

const MIN_LENGTH = 10; // PASSWORD_MIN_LENGTH in app/schemas/auth.py

export function ChangePasswordForm() {
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const current = String(data.get("current"));
    const next = String(data.get("new"));
    setDone(false);
    if (next !== String(data.get("repeat"))) {
      setError("The new passwords do not match.");
      return;
    }
    setBusy(true);
    try {
      saveTokens(
        unwrap(
          await api.POST("/api/auth/password", {
            body: { current_password: current, new_password: next },
          }),
        ),
      );
      setError(null);
      setDone(true);
      form.reset();
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="auth-form" onSubmit={submit} aria-labelledby="password-heading">
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      {done && (
        <p className="notice" role="status">
          Password changed. You stay logged in here; every other session has ended.
        </p>
      )}
      <label>
        Current password
        <input name="current" type="password" autoComplete="current-password" required />
      </label>
      <label>
        New password
        <input
          name="new"
          type="password"
          autoComplete="new-password"
          minLength={MIN_LENGTH}
          required
        />
      </label>
      <label>
        New password again
        <input
          name="repeat"
          type="password"
          autoComplete="new-password"
          minLength={MIN_LENGTH}
          required
        />
      </label>
      <button type="submit" className="primary" disabled={busy}>
        Change password
      </button>
    </form>
  );
}

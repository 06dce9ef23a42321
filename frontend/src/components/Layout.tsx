import { type ReactNode, useState } from "react";
import { Link, NavLink } from "react-router-dom";
import { useAuth } from "../auth/AuthProvider";
import { applyTheme, storedTheme, type ThemeChoice } from "../theme";
import { Logo } from "./Logo";

export function Layout({
  children,
  anonymous = false,
}: {
  children: ReactNode;
  anonymous?: boolean;
}) {
  const { user, logout } = useAuth();
  const [theme, setTheme] = useState<ThemeChoice>(storedTheme);
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">
          <Logo /> <span className="brand-name">KnowledgeTree</span>
        </span>
        <nav aria-label="Main">
          {!anonymous && <NavLink to="/chat">Chat</NavLink>}
          {!anonymous && <NavLink to="/projects">Projects</NavLink>}
          <NavLink to="/pricing">Pricing</NavLink>
          {!anonymous && <NavLink to="/account">Account</NavLink>}
          {user?.is_admin && <NavLink to="/admin">Admin</NavLink>}
        </nav>
        <div className="topbar-end">
          <label className="theme-select">
            <span className="visually-hidden">Theme</span>
            <select
              value={theme}
              onChange={(event) => {
                const choice = event.target.value as ThemeChoice;
                applyTheme(choice);
                setTheme(choice);
              }}
            >
              <option value="system">System</option>
              <option value="light">Light</option>
              <option value="dark">Dark</option>
            </select>
          </label>
          {anonymous ? (
            <>
              <Link to="/login">Log in</Link>
              <Link className="button primary" to="/register">
                Sign up
              </Link>
            </>
          ) : (
            <>
              <span className="user-email" title={user?.email}>
                {user?.email}
              </span>
              <button type="button" className="ghost" onClick={() => void logout()}>
                Log out
              </button>
            </>
          )}
        </div>
      </header>
      <main id="main">{children}</main>
    </div>
  );
}

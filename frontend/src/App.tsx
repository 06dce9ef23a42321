import type { ReactNode } from "react";
import { Navigate, Route, Routes, useLocation } from "react-router-dom";
import { useAuth } from "./auth/AuthProvider";
import { Layout } from "./components/Layout";
import { UpgradePrompt } from "./components/UpgradePrompt";
import { AccountPage } from "./pages/AccountPage";
import { AdminPage } from "./pages/AdminPage";
import { AuthPage } from "./pages/AuthPage";
import { ChatPage } from "./pages/ChatPage";
import { CheckoutResultPage } from "./pages/CheckoutResultPage";
import { ForgotPasswordPage, ResetPasswordPage } from "./pages/PasswordPages";
import { PricingPage } from "./pages/PricingPage";
import { ProjectPage } from "./pages/ProjectPage";
import { ProjectsPage } from "./pages/ProjectsPage";

/** Pricing is public: the app's layout, with "Log in / Sign up" for a visitor. */
function Public({ children }: { children: ReactNode }) {
  const { user, loading } = useAuth();
  if (loading) return <p className="centered">Loading…</p>;
  return <Layout anonymous={!user}>{children}</Layout>;
}

function RequireAuth({ children }: { children: ReactNode }) {
  const { user, loading } = useAuth();
  const location = useLocation();
  if (loading) return <p className="centered">Loading…</p>;
  if (!user) {
    const next = encodeURIComponent(location.pathname + location.search);
    return <Navigate to={`/login?next=${next}`} replace />;
  }
  return <Layout>{children}</Layout>;
}

export function App() {
  return (
    <>
      <UpgradePrompt />
      <Routes>
        <Route path="/login" element={<AuthPage mode="login" />} />
        <Route path="/register" element={<AuthPage mode="register" />} />
        <Route path="/forgot-password" element={<ForgotPasswordPage />} />
        <Route path="/reset-password" element={<ResetPasswordPage />} />
        <Route
          path="/projects"
          element={
            <RequireAuth>
              <ProjectsPage />
            </RequireAuth>
          }
        />
        <Route
          path="/projects/:projectId"
          element={
            <RequireAuth>
              <ProjectPage />
            </RequireAuth>
          }
        />
        {/* One route for /chat and /chat/:id: a new conversation getting its id keeps the stream. */}
        <Route
          path="/chat/:conversationId?"
          element={
            <RequireAuth>
              <ChatPage />
            </RequireAuth>
          }
        />
        <Route
          path="/pricing"
          element={
            <Public>
              <PricingPage />
            </Public>
          }
        />
        <Route
          path="/account"
          element={
            <RequireAuth>
              <AccountPage />
            </RequireAuth>
          }
        />
        <Route
          path="/checkout/success"
          element={
            <RequireAuth>
              <CheckoutResultPage outcome="success" />
            </RequireAuth>
          }
        />
        <Route
          path="/checkout/cancel"
          element={
            <RequireAuth>
              <CheckoutResultPage outcome="cancel" />
            </RequireAuth>
          }
        />
        <Route
          path="/admin"
          element={
            <RequireAuth>
              <AdminPage />
            </RequireAuth>
          }
        />
        <Route path="*" element={<Navigate to="/chat" replace />} />
      </Routes>
    </>
  );
}

// Who is logged in. The user comes from GET /api/auth/me (through the refreshing
// client); when the session ends the user goes to /login with the page to come back to.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, type ReactNode, useContext, useEffect } from "react";
import { useNavigate } from "react-router-dom";
import { api, type User, unwrap } from "../api/client";
import { clearSession, hasSession, onSessionEnded, refreshToken, saveTokens } from "../api/session";

type Auth = {
  user: User | null;
  loading: boolean;
  login: (email: string, password: string) => Promise<void>;
  register: (email: string, password: string, invitation?: string | null) => Promise<void>;
  logout: () => Promise<void>;
};

const AuthContext = createContext<Auth | null>(null);

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const me = useQuery({
    queryKey: ["me"],
    queryFn: async () => (hasSession() ? unwrap(await api.GET("/api/auth/me")) : null),
    retry: false,
    staleTime: Number.POSITIVE_INFINITY,
  });

  useEffect(
    () =>
      onSessionEnded(() => {
        queryClient.clear();
        queryClient.setQueryData(["me"], null);
        const here = window.location.pathname + window.location.search;
        if (!here.startsWith("/login")) {
          navigate(`/login?expired=1&next=${encodeURIComponent(here)}`, { replace: true });
        }
      }),
    [queryClient, navigate],
  );

  const login = async (email: string, password: string) => {
    saveTokens(unwrap(await api.POST("/api/auth/login", { body: { email, password } })));
    await queryClient.invalidateQueries({ queryKey: ["me"] });
  };
  const register = async (email: string, password: string, invitation?: string | null) => {
    // The API answers the same whether the address already has an account (it does not
    // tell who has one), so the login that follows is what can fail.
    unwrap(await api.POST("/api/auth/register", { body: { email, password, invitation } }));
    try {
      await login(email, password);
    } catch {
      throw new Error(
        "This address may already have an account: log in instead, or reset its password.",
      );
    }
  };
  const logout = async () => {
    const token = refreshToken();
    if (token)
      await api.POST("/api/auth/logout", { body: { refresh_token: token } }).catch(() => null);
    clearSession();
  };

  return (
    <AuthContext.Provider
      value={{ user: me.data ?? null, loading: me.isPending, login, register, logout }}
    >
      {children}
    </AuthContext.Provider>
  );
}

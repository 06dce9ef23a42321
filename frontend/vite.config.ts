/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

// The API the dev server and `vite preview` proxy /api to (`make dev` listens on 8000).
const api = process.env.KT_API_URL ?? "http://127.0.0.1:8000";
const proxy = { "/api": { target: api, changeOrigin: false } };

export default defineConfig({
  plugins: [react()],
  server: { proxy },
  // KT_CSP: the Content-Security-Policy nginx sends in production, so the browser tests
  // run the built app under it (tests/e2e/playwright.config.ts reads it from roles/nginx).
  preview: {
    proxy,
    headers: process.env.KT_CSP ? { "Content-Security-Policy": process.env.KT_CSP } : {},
  },
  build: { sourcemap: false, chunkSizeWarningLimit: 600 },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});

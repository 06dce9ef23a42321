import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import DailyUsageChart from "./DailyUsageChart";

const days = [
  { day: "2026-11-29", messages: 0 },
  { day: "2026-11-30", messages: 4 },
  { day: "2026-12-01", messages: 2 },
];
const GET = vi.fn(async (_path: string, _options: unknown) => ({
  data: { days },
  response: new Response(),
}));
vi.mock("../api/client", async (original) => ({
  ...(await original<typeof import("../api/client")>()),
  api: { GET: (path: string, options: unknown) => GET(path, options) },
}));

test("one bar per day, scaled to the busiest day, with a summary for screen readers", async () => {
  render(
    <QueryClientProvider client={new QueryClient()}>
      <DailyUsageChart days={3} />
    </QueryClientProvider>,
  );
  const chart = await screen.findByRole("img", {
    name: "Messages per day, last 3 days: 6 in all, at most 4 in a day",
  });
  const bars = [...chart.querySelectorAll("rect")];
  expect(bars.map((bar) => bar.getAttribute("data-messages"))).toEqual(["0", "4", "2"]);
  const heights = bars.map((bar) => Number(bar.getAttribute("height")));
  expect(heights[0]).toBe(0);
  expect(heights[1]).toBe(2 * heights[2]);
  expect(GET).toHaveBeenCalledWith("/api/account/usage/daily", { params: { query: { days: 3 } } });
});

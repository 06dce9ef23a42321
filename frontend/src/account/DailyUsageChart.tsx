// The account page's chart of model calls per day: a bar per day drawn as SVG by hand
// (a chart library would cost more than the whole page). Loaded lazily by AccountPage.
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../api/client";

const WIDTH = 600;
const HEIGHT = 120;
const AXIS = 16;

const dayLabel = (day: string) =>
  new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, {
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });

export default function DailyUsageChart({ days = 30 }: { days?: number }) {
  const usage = useQuery({
    queryKey: ["account", "daily", days],
    queryFn: async () =>
      unwrap(await api.GET("/api/account/usage/daily", { params: { query: { days } } })),
  });
  if (usage.isError) return <p className="error-text">{(usage.error as Error).message}</p>;
  if (!usage.data) return <p className="hint">Loading the daily chart…</p>;
  const series = usage.data.days;
  const peak = Math.max(1, ...series.map((d) => d.messages));
  const total = series.reduce((sum, d) => sum + d.messages, 0);
  const slot = WIDTH / series.length;
  const first = series[0]?.day;
  const last = series[series.length - 1]?.day;
  return (
    <figure className="daily-chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT + AXIS}`}
        role="img"
        aria-labelledby="daily-chart-title"
        preserveAspectRatio="none"
      >
        <title id="daily-chart-title">
          Messages per day, last {series.length} days: {total} in all, at most {peak} in a day
        </title>
        <line x1={0} x2={WIDTH} y1={HEIGHT} y2={HEIGHT} className="axis" />
        {series.map((d, i) => {
          const height = (d.messages / peak) * (HEIGHT - 4);
          return (
            <rect
              key={d.day}
              x={i * slot + slot * 0.15}
              y={HEIGHT - height}
              width={slot * 0.7}
              height={height}
              data-day={d.day}
              data-messages={d.messages}
            >
              <title>
                {dayLabel(d.day)}: {d.messages}
              </title>
            </rect>
          );
        })}
      </svg>
      <figcaption className="hint daily-chart-axis">
        <span>{first && dayLabel(first)}</span>
        <span>
          {total} {total === 1 ? "message" : "messages"} in {series.length}{" "}
          {series.length === 1 ? "day" : "days"} (peak {peak})
        </span>
        <span>{last && dayLabel(last)}</span>
      </figcaption>
    </figure>
  );
}

/** The tree mark (an SVG: emoji fonts are not everywhere). */
export function Logo({ size = 24 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" aria-hidden="true" className="logo">
      <rect x="10.5" y="13" width="3" height="9" rx="1" fill="#8a5a2b" />
      <circle cx="12" cy="9" r="7" fill="var(--accent)" />
      <circle cx="8.5" cy="11" r="4" fill="var(--accent)" opacity="0.85" />
      <circle cx="15.5" cy="11" r="4" fill="var(--accent)" opacity="0.85" />
    </svg>
  );
}

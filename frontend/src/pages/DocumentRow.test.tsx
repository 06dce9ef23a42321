import { render, screen } from "@testing-library/react";
import type { DocumentInfo } from "../api/client";
import { DocumentRow } from "./ProjectPage";

const base: DocumentInfo = {
  id: "d1",
  project_id: "p1",
  filename: "handbook.pdf",
  content_type: "application/pdf",
  kind: "pdf",
  size_bytes: 20480,
  sha256: "x",
  status: "processing",
  progress: 40,
  error: null,
  page_count: 3,
  chunk_count: 0,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
};

describe("DocumentRow", () => {
  it("shows a progress bar while processing", () => {
    render(<DocumentRow document={base} onDelete={() => {}} />);
    expect(
      screen.getByRole("progressbar", { name: /handbook.pdf: 40% processed/ }),
    ).toHaveAttribute("value", "40");
  });

  it("shows why processing failed", () => {
    render(
      <DocumentRow
        document={{ ...base, status: "failed", error: "The PDF has no text layer" }}
        onDelete={() => {}}
      />,
    );
    expect(screen.getByRole("alert")).toHaveTextContent("Failed: The PDF has no text layer");
    expect(screen.queryByRole("progressbar")).toBeNull();
  });
});

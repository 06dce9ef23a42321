import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import Markdown, { linkCitations } from "./Markdown";

describe("Markdown", () => {
  it("turns [n] into citation links but leaves Markdown links alone", () => {
    expect(linkCitations("See [2] and [docs](http://x) [3].")).toBe(
      "See [[2]](#cite-2) and [docs](http://x) [[3]](#cite-3).",
    );
  });

  it("renders GFM tables and citation buttons that open the source", async () => {
    const onCite = vi.fn();
    render(
      <Markdown text={"| a | b |\n|---|---|\n| 1 | 2 |\n\nThe answer [2]."} onCite={onCite} />,
    );
    expect(screen.getByRole("table")).toBeInTheDocument();
    expect(screen.getAllByRole("cell").map((c) => c.textContent)).toEqual(["1", "2"]);
    await userEvent.click(screen.getByRole("button", { name: "Source 2" }));
    expect(onCite).toHaveBeenCalledWith(2);
  });

  it("highlights code and copies it", async () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    const { container } = render(<Markdown text={"```python\nprint('hi')\n```"} />);
    expect(container.querySelector("code.hljs")).not.toBeNull();
    await userEvent.click(screen.getByRole("button", { name: "Copy code" }));
    expect(writeText).toHaveBeenCalledWith("print('hi')\n");
  });
});

import { render, screen } from "@testing-library/react";
import type { Message } from "../api/client";
import { MessageList } from "./MessageList";

const message = (over: Partial<Message>): Message => ({
  id: "m1",
  position: 1,
  role: "assistant",
  content: "Partial answer",
  status: "complete",
  error: null,
  model: "claude",
  offline: false,
  input_tokens: 1,
  output_tokens: 1,
  created_at: "2026-01-01T00:00:00Z",
  sources: [],
  ...over,
});

describe("MessageList", () => {
  it("marks an incomplete answer with its reason", async () => {
    render(
      <MessageList
        messages={[
          message({
            status: "incomplete",
            error: "The connection closed before the answer was finished.",
          }),
        ]}
        turn={null}
        onCite={() => {}}
        onSaveArtifact={() => {}}
      />,
    );
    expect(screen.getByRole("note")).toHaveTextContent("Incomplete answer: The connection closed");
    expect(await screen.findByText("Partial answer")).toBeInTheDocument();
  });

  it("shows the live answer with a typing indicator", () => {
    render(
      <MessageList
        messages={[]}
        turn={{ question: "Why?", answer: "Because", sources: [], phase: "streaming" }}
        onCite={() => {}}
        onSaveArtifact={() => {}}
      />,
    );
    expect(screen.getByText("Why?")).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("The answer is being written");
  });
});

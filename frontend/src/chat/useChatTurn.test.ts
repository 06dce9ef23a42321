import { act, renderHook, waitFor } from "@testing-library/react";
import { useChatTurn } from "./useChatTurn";

const encoder = new TextEncoder();
const sse = (event: string, data: unknown) =>
  encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

/** A stream response that sends `chunks` and then ends, or breaks like a dropped network. */
function streamResponse(chunks: Uint8Array[], drop: boolean): Response {
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      await new Promise((resolve) => setTimeout(resolve, 10));
      if (drop) controller.error(new TypeError("network error"));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

const opening = [
  sse("conversation", { conversation_id: "c1", title: "Q", user_message_id: "u1" }),
  sse("sources", { sources: [] }),
  sse("token", { text: "Half " }),
  sse("token", { text: "an answer" }),
];

function setup(response: () => Response) {
  vi.stubGlobal(
    "fetch",
    vi.fn(async () => response()),
  );
  const onFinished = vi.fn();
  const hook = renderHook(() => useChatTurn({ onConversation: () => {}, onFinished }));
  return { hook, onFinished };
}

describe("useChatTurn", () => {
  afterEach(() => vi.unstubAllGlobals());
  const request = { message: "Q", conversation_id: null, project_id: null };

  it("keeps what arrived when the network drops, and offers a retry", async () => {
    const { hook, onFinished } = setup(() => streamResponse(opening, true));
    await act(() => hook.result.current.send(request));
    expect(hook.result.current.turn?.answer).toBe("Half an answer");
    expect(hook.result.current.turn?.phase).toBe("failed");
    expect(hook.result.current.banner).toEqual({
      message: expect.stringContaining("connection was lost"),
      retryable: true,
    });
    expect(onFinished).toHaveBeenCalledWith("c1", true);
  });

  it("shows an error event's message and retries in the same conversation", async () => {
    const failing = [
      ...opening,
      sse("error", {
        message: "The model is overloaded; try again.",
        retryable: true,
        kind: "overloaded",
      }),
      sse("done", { message_id: "m1", status: "incomplete", cited: [] }),
    ];
    const fetchMock = vi.fn(async () => streamResponse(failing, false));
    vi.stubGlobal("fetch", fetchMock);
    const hook = renderHook(() => useChatTurn({ onConversation: () => {}, onFinished: () => {} }));
    await act(() => hook.result.current.send(request));
    expect(hook.result.current.banner?.message).toBe("The model is overloaded; try again.");
    expect(hook.result.current.turn?.status).toBe("incomplete");
    act(() => hook.result.current.retry());
    await waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(2));
    const retried = (fetchMock.mock.calls[1] as unknown as [Request])[0];
    expect(JSON.parse(await retried.text())).toMatchObject({ message: "Q", conversation_id: "c1" });
  });
});

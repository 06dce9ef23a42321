// Reading POST /api/chat/stream: an EventSource can only GET, so the body is read with
// fetch + ReadableStream and split into Server-Sent Events here.
// Protocol (docs/ARCHITECTURE.md): conversation, sources, token…, usage, error, done.
import { type ChatRequest, errorMessage, type Source } from "../api/client";
import { authFetch } from "../api/session";

export type StreamSource = Omit<Source, "cited">;
export type ChatEvent =
  | {
      event: "conversation";
      data: { conversation_id: string; title: string; user_message_id: string };
    }
  | { event: "sources"; data: { sources: StreamSource[] } }
  | { event: "token"; data: { text: string } }
  | {
      event: "usage";
      data: { input_tokens: number; output_tokens: number; model: string; offline: boolean };
    }
  | { event: "error"; data: { message: string; retryable: boolean; kind: string } }
  // message_id is null when the answer could not be saved (the database went away).
  | { event: "done"; data: { message_id: string | null; status: string; cited: number[] } };

/** Incremental SSE parser: feed it text as it arrives, get whole events back. */
export class SseParser {
  private buffer = "";

  feed(chunk: string): ChatEvent[] {
    this.buffer += chunk.replace(/\r\n?/g, "\n");
    const events: ChatEvent[] = [];
    let end = this.buffer.indexOf("\n\n");
    while (end !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const parsed = parseBlock(block);
      if (parsed) events.push(parsed);
      end = this.buffer.indexOf("\n\n");
    }
    return events;
  }
}

function parseBlock(block: string): ChatEvent | null {
  let name = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // heartbeat comment
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return null;
  return { event: name, data: JSON.parse(data.join("\n")) } as ChatEvent;
}

/** Thrown when the request is refused before the stream starts (404, 422…). */
export class ChatRefused extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** POST the question and call `onEvent` for each event until the stream ends.
 * Rejects with ChatRefused (a 4xx), an AbortError (Stop), or a TypeError (network). */
export async function streamChat(
  body: ChatRequest,
  onEvent: (event: ChatEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await authFetch("/api/chat/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok || !response.body) {
    const detail = await response.json().catch(() => null);
    throw new ChatRefused(
      errorMessage(detail, `The server answered ${response.status}`),
      response.status,
    );
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.feed(value)) onEvent(event);
  }
}

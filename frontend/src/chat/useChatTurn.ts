// One question being answered: the text so far, its sources, and how it ended.
// The answer is kept on screen after Stop, an `error` event or a dropped connection;
// `retry` asks the same question again.
import { useRef, useState } from "react";
import type { ChatRequest } from "../api/client";
import { type ChatEvent, ChatRefused, type StreamSource, streamChat } from "./sse";

export type TurnState = {
  question: string;
  answer: string;
  sources: StreamSource[];
  phase: "waiting" | "streaming" | "done" | "stopped" | "failed";
  status?: string; // the server's final status: complete | incomplete | failed
  error?: { message: string; retryable: boolean };
  offline?: boolean;
  messageId?: string;
};

export type Banner = { message: string; retryable: boolean };

type Callbacks = {
  onConversation: (id: string) => void;
  /** `saved`: the server started the turn (a `conversation` event came), so the
   * question, and whatever answer there is, are in the conversation now. */
  onFinished: (conversationId: string | null, saved: boolean) => void;
};

export function useChatTurn({ onConversation, onFinished }: Callbacks) {
  const [turn, setTurn] = useState<TurnState | null>(null);
  // The error banner outlives the turn: it stays after the saved message replaces it.
  const [banner, setBanner] = useState<Banner | null>(null);
  const controller = useRef<AbortController | null>(null);
  const lastRequest = useRef<ChatRequest | null>(null);

  const send = async (request: ChatRequest) => {
    controller.current?.abort();
    const abort = new AbortController();
    controller.current = abort;
    lastRequest.current = request;
    let conversationId = request.conversation_id ?? null;
    let saved = false;
    let finished = false;
    setBanner(null);
    setTurn({ question: request.message, answer: "", sources: [], phase: "waiting" });
    const update = (change: (t: TurnState) => TurnState) => setTurn((t) => (t ? change(t) : t));
    const onEvent = (event: ChatEvent) => {
      switch (event.event) {
        case "conversation":
          conversationId = event.data.conversation_id;
          saved = true;
          // A retry continues the conversation this question started.
          lastRequest.current = { ...request, conversation_id: conversationId };
          onConversation(conversationId);
          break;
        case "sources":
          update((t) => ({ ...t, sources: event.data.sources }));
          break;
        case "token":
          update((t) => ({ ...t, phase: "streaming", answer: t.answer + event.data.text }));
          break;
        case "usage":
          update((t) => ({ ...t, offline: event.data.offline }));
          break;
        case "error":
          setBanner({ message: event.data.message, retryable: event.data.retryable });
          update((t) => ({
            ...t,
            error: { message: event.data.message, retryable: event.data.retryable },
          }));
          break;
        case "done":
          finished = true;
          update((t) => ({
            ...t,
            phase: "done",
            status: event.data.status,
            messageId: event.data.message_id ?? undefined,
          }));
          break;
      }
    };
    try {
      await streamChat(request, onEvent, abort.signal);
      if (!finished) {
        setBanner({ message: "The answer ended early.", retryable: true });
        update((t) => ({ ...t, phase: "failed" }));
      }
    } catch (failure) {
      if (abort.signal.aborted) {
        update((t) => ({ ...t, phase: "stopped" }));
      } else {
        const message =
          failure instanceof ChatRefused
            ? failure.message
            : "The connection was lost before the answer was finished. What arrived is kept below.";
        const error = {
          message,
          retryable: !(failure instanceof ChatRefused) || failure.status >= 500,
        };
        setBanner(error);
        update((t) => ({ ...t, phase: "failed", error }));
      }
    } finally {
      if (controller.current === abort) controller.current = null;
      onFinished(conversationId, saved);
    }
  };

  return {
    turn,
    banner,
    dismissBanner: () => setBanner(null),
    send,
    stop: () => controller.current?.abort(),
    retry: () => {
      if (lastRequest.current) void send(lastRequest.current);
    },
    clear: () => setTurn(null),
  };
}

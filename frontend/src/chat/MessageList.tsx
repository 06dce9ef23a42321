import { type ReactNode, useCallback, useEffect, useLayoutEffect, useRef } from "react";
import type { Message } from "../api/client";
import { CopyButton } from "../components/CopyButton";
import { LazyMarkdown } from "../components/LazyMarkdown";
import type { TurnState } from "./useChatTurn";

type Props = {
  messages: Message[];
  turn: TurnState | null;
  onCite: (messageId: string | null, n: number) => void;
  onSaveArtifact: (messageId: string) => void;
  /** Shown after the last message (the error banner with its retry button). */
  footer?: ReactNode;
};

function Badge({ message }: { message: Pick<Message, "status" | "error" | "offline"> }) {
  if (message.status === "incomplete") {
    return (
      <p className="badge warning" role="note">
        Incomplete answer{message.error ? `: ${message.error}` : ""}
      </p>
    );
  }
  if (message.status === "failed") {
    return (
      <p className="badge error" role="note">
        No answer{message.error ? `: ${message.error}` : ""}
      </p>
    );
  }
  if (message.offline) {
    return <p className="badge info">Offline mode: quoted passages, not written by a model</p>;
  }
  return null;
}

function AssistantMessage({
  message,
  onCite,
  onSaveArtifact,
}: { message: Message } & Pick<Props, "onCite" | "onSaveArtifact">) {
  return (
    <article className="message assistant" aria-label="Answer">
      <Badge message={message} />
      {message.content && (
        <LazyMarkdown text={message.content} onCite={(n) => onCite(message.id, n)} />
      )}
      <div className="message-actions">
        <CopyButton text={() => message.content} label="Copy answer" />
        {message.content && (
          <button type="button" className="small ghost" onClick={() => onSaveArtifact(message.id)}>
            Save as artifact
          </button>
        )}
      </div>
    </article>
  );
}

function UserMessage({ text }: { text: string }) {
  return (
    <article className="message user" aria-label="Question">
      <div className="plain-text">{text}</div>
      <div className="message-actions">
        <CopyButton text={() => text} label="Copy question" />
      </div>
    </article>
  );
}

function PendingTurn({ turn, onCite }: { turn: TurnState; onCite: Props["onCite"] }) {
  const live = turn.phase === "waiting" || turn.phase === "streaming";
  return (
    <>
      <UserMessage text={turn.question} />
      <article className="message assistant" aria-label="Answer" aria-busy={live}>
        {turn.offline && (
          <p className="badge info">Offline mode: quoted passages, not written by a model</p>
        )}
        {turn.answer && <LazyMarkdown text={turn.answer} onCite={(n) => onCite(null, n)} />}
        {live && (
          <p className="typing" role="status">
            <span className="visually-hidden">The answer is being written</span>
            <span />
            <span />
            <span />
          </p>
        )}
        {(turn.phase === "stopped" || turn.phase === "failed" || turn.status === "incomplete") && (
          <p className="badge warning" role="note">
            Incomplete answer{turn.phase === "stopped" ? ": stopped" : ""}
          </p>
        )}
      </article>
    </>
  );
}

/** Scrolls to the newest text while the user is at the bottom; stops following as soon
 * as they scroll up, and follows again when they come back down. */
export function MessageList({ messages, turn, onCite, onSaveArtifact, footer }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const follow = useRef(true);
  const content = useRef<HTMLDivElement>(null);
  const lastTop = useRef(0);
  const scrollDown = useCallback(() => {
    const el = box.current;
    if (!el) return;
    // The reader moved up since the last automatic scroll (its scroll event may not have
    // arrived yet): stop following.
    const distance = el.scrollHeight - el.scrollTop - el.clientHeight;
    if (el.scrollTop < lastTop.current - 4 && distance > 48) follow.current = false;
    if (follow.current) el.scrollTop = el.scrollHeight;
    lastTop.current = el.scrollTop;
  }, []);
  useLayoutEffect(scrollDown);
  // Content also grows without a render here (Markdown loading, code highlighted).
  useEffect(() => {
    if (typeof ResizeObserver === "undefined" || !content.current) return;
    const observer = new ResizeObserver(scrollDown);
    observer.observe(content.current);
    return () => observer.disconnect();
  }, [scrollDown]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: a new question re-enables following
  useEffect(() => {
    follow.current = true; // a new question: follow its answer
  }, [turn?.question]);
  return (
    <div
      ref={box}
      className="messages"
      role="log"
      aria-label="Messages"
      // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard
      tabIndex={0}
      onScroll={(event) => {
        const el = event.currentTarget;
        follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
      }}
    >
      <div ref={content} className="messages-inner">
        {messages.length === 0 && !turn && (
          <div className="empty-chat">
            <h1>Ask your documents</h1>
            <p className="hint">
              Pick a project in the chat settings, then ask a question. Answers cite their sources
              like [1].
            </p>
          </div>
        )}
        {messages.map((message) =>
          message.role === "user" ? (
            <UserMessage key={message.id} text={message.content} />
          ) : (
            <AssistantMessage
              key={message.id}
              message={message}
              onCite={onCite}
              onSaveArtifact={onSaveArtifact}
            />
          ),
        )}
        {turn && <PendingTurn turn={turn} onCite={onCite} />}
        {footer}
      </div>
    </div>
  );
}

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, type ConversationSummary, download, unwrap } from "../api/client";
import { ConfirmDialog } from "../components/Dialog";

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

function ConversationItem({
  conversation,
  active,
  snippet,
  onDelete,
}: {
  conversation: ConversationSummary;
  active: boolean;
  snippet?: string;
  onDelete: () => void;
}) {
  const queryClient = useQueryClient();
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const rename = useMutation({
    mutationFn: async (title: string) =>
      unwrap(
        await api.PATCH("/api/conversations/{conversation_id}", {
          params: { path: { conversation_id: conversation.id } },
          body: { title },
        }),
      ),
    onSuccess: () => {
      setEditing(false);
      setError(null);
      void queryClient.invalidateQueries({ queryKey: ["conversations"] });
      void queryClient.invalidateQueries({ queryKey: ["conversation", conversation.id] });
    },
    onError: (failure: Error) => setError(failure.message),
  });

  return (
    <li className={`conversation-item${active ? " active" : ""}`}>
      {editing ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            const title = String(new FormData(event.currentTarget).get("title")).trim();
            if (title) rename.mutate(title);
          }}
        >
          <label className="visually-hidden" htmlFor={`title-${conversation.id}`}>
            New title
          </label>
          <input
            id={`title-${conversation.id}`}
            name="title"
            defaultValue={conversation.title}
            maxLength={200}
            // biome-ignore lint/a11y/noAutofocus: the field the user just asked to edit
            autoFocus
            onKeyDown={(event) => {
              if (event.key === "Escape") setEditing(false);
            }}
            onBlur={(event) => {
              const title = event.currentTarget.value.trim();
              if (rename.isPending) return;
              if (title && title !== conversation.title) rename.mutate(title);
              else setEditing(false);
            }}
          />
          {error && <span className="error-text">{error}</span>}
        </form>
      ) : (
        <Link to={`/chat/${conversation.id}`} aria-current={active ? "page" : undefined}>
          <span className="conversation-title">{conversation.title}</span>
          {snippet && <span className="snippet">{snippet}</span>}
        </Link>
      )}
      <div className="item-actions">
        <button
          type="button"
          className="small ghost"
          onClick={() => setEditing(true)}
          aria-label={`Rename ${conversation.title}`}
        >
          Rename
        </button>
        <button
          type="button"
          className="small ghost"
          aria-label={`Export ${conversation.title} as Markdown`}
          onClick={() =>
            void download(`/api/conversations/${conversation.id}/export`, "conversation.md").catch(
              (failure: Error) => setError(failure.message),
            )
          }
        >
          Export
        </button>
        <button
          type="button"
          className="small ghost danger"
          onClick={onDelete}
          aria-label={`Delete ${conversation.title}`}
        >
          Delete
        </button>
      </div>
    </li>
  );
}

export function ConversationSidebar({ activeId }: { activeId?: string }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [search, setSearch] = useState("");
  const [deleting, setDeleting] = useState<ConversationSummary | null>(null);
  const q = useDebounced(search.trim(), 250);
  const list = useQuery({
    queryKey: ["conversations"],
    queryFn: async () =>
      unwrap(await api.GET("/api/conversations", { params: { query: { limit: 100 } } })),
  });
  const hits = useQuery({
    queryKey: ["conversations", "search", q],
    enabled: q.length > 0,
    queryFn: async () =>
      unwrap(await api.GET("/api/conversations/search", { params: { query: { q } } })),
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/conversations/{conversation_id}", {
          params: { path: { conversation_id: id } },
        }),
      ),
    onSuccess: (_, id) => {
      void queryClient.invalidateQueries({ queryKey: ["conversations"] });
      if (id === activeId) navigate("/chat");
    },
  });
  const shown = q ? hits.data : list.data;

  return (
    <nav className="sidebar" aria-label="Conversations">
      <Link to="/chat" className="button primary new-chat">
        + New conversation
      </Link>
      <label className="visually-hidden" htmlFor="conversation-search">
        Search conversations
      </label>
      <input
        id="conversation-search"
        type="search"
        placeholder="Search conversations"
        value={search}
        onChange={(event) => setSearch(event.target.value)}
      />
      {shown?.length === 0 && (
        <p className="empty">{q ? "Nothing found." : "No conversations yet."}</p>
      )}
      <ul className="conversation-list">
        {shown?.map((conversation) => (
          <ConversationItem
            key={conversation.id}
            conversation={conversation}
            active={conversation.id === activeId}
            snippet={"snippet" in conversation ? (conversation.snippet as string) : undefined}
            onDelete={() => setDeleting(conversation)}
          />
        ))}
      </ul>
      <ConfirmDialog
        open={deleting !== null}
        title="Delete conversation?"
        message={`"${deleting?.title}" and its messages will be deleted. Artifacts made from it are kept.`}
        confirmLabel="Delete conversation"
        onCancel={() => setDeleting(null)}
        onConfirm={() => {
          if (deleting) remove.mutate(deleting.id);
          setDeleting(null);
        }}
      />
    </nav>
  );
}

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { useNavigate, useParams, useSearchParams } from "react-router-dom";
import { api, type Conversation, errorMessage, unwrap } from "../api/client";
import { ArtifactsPanel } from "../chat/ArtifactsPanel";
import { ChatSettings, loadSettings, type Settings, saveSettings } from "../chat/ChatSettings";
import { Composer } from "../chat/Composer";
import { ConversationSidebar } from "../chat/ConversationSidebar";
import { MessageList } from "../chat/MessageList";
import { SourcesPanel } from "../chat/SourcesPanel";
import { useChatTurn } from "../chat/useChatTurn";
import { useProjects } from "./ProjectsPage";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function useConversation(id: string | undefined) {
  return useQuery({
    queryKey: ["conversation", id],
    enabled: Boolean(id),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/conversations/{conversation_id}", {
          params: { path: { conversation_id: id ?? "" } },
        }),
      ),
  });
}

type Panel = "sources" | "artifacts";

export function ChatPage() {
  const { conversationId } = useParams();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const projects = useProjects();
  const conversation = useConversation(conversationId);
  const [settings, setSettings] = useState<Settings>(() => ({
    projectId: params.get("project"),
    ...loadSettings(conversationId),
  }));
  const [panel, setPanel] = useState<Panel>("sources");
  const [panelOpen, setPanelOpen] = useState(
    () => window.matchMedia?.("(min-width: 1100px)").matches ?? false,
  );
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const [citation, setCitation] = useState<{ messageId: string | null; n: number } | null>(null);
  const [artifactId, setArtifactId] = useState<string | null>(null);
  const [artifactError, setArtifactError] = useState<string | null>(null);

  const messages = conversation.data?.messages ?? [];

  const chat = useChatTurn({
    onConversation: (id) => {
      if (id !== conversationId) navigate(`/chat/${id}`, { replace: !conversationId });
    },
    onFinished: async (id, saved) => {
      if (!id || !saved) return;
      // The saved question + answer replace the live turn once the server has them
      // (after Stop the server saves the partial answer a moment later).
      const expected = messages.length + 2;
      for (let attempt = 0; attempt < 20; attempt++) {
        const fresh = await queryClient.fetchQuery<Conversation>({
          queryKey: ["conversation", id],
          queryFn: async () =>
            unwrap(
              await api.GET("/api/conversations/{conversation_id}", {
                params: { path: { conversation_id: id } },
              }),
            ),
          staleTime: 0,
        });
        if (fresh.messages.length >= expected) {
          chat.clear();
          break;
        }
        await sleep(300);
      }
      // Not saved yet after 6 s: the live turn stays on screen (a reload shows the saved one).
      void queryClient.invalidateQueries({ queryKey: ["conversations"] });
    },
  });
  const busy = chat.turn?.phase === "waiting" || chat.turn?.phase === "streaming";

  // Another conversation (or a new one): its own settings, panels reset.
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs on navigation only
  useEffect(() => {
    if (busy) return; // our own new conversation just got its id
    setSettings((current) => ({
      ...loadSettings(conversationId),
      projectId: conversationId ? current.projectId : (params.get("project") ?? current.projectId),
    }));
    setCitation(null);
    setArtifactId(null);
  }, [conversationId]);
  // An existing conversation's project is fixed by the server.
  const conversationProject = conversation.data?.project_id;
  useEffect(() => {
    if (conversationId && conversation.data)
      setSettings((current) => ({ ...current, projectId: conversationProject ?? null }));
  }, [conversationId, conversation.data, conversationProject]);
  // Sources arriving for the live answer fill the panel.
  const liveSources = chat.turn?.sources;
  useEffect(() => {
    if (liveSources?.length) {
      setPanel("sources");
      setCitation(null);
    }
  }, [liveSources]);

  const updateSettings = (next: Settings) => {
    setSettings(next);
    if (conversationId) saveSettings(conversationId, next);
  };

  const send = (text: string) => {
    if (conversationId) saveSettings(conversationId, settings);
    void chat.send({
      message: text,
      conversation_id: conversationId ?? null,
      project_id: settings.projectId,
      use_rag: Boolean(settings.projectId) && settings.useRag,
      max_context_chunks: settings.maxPassages,
      min_similarity: settings.minSimilarity,
    });
  };

  // Which answer's sources the panel shows: the clicked one, else the live or last answer.
  const lastAssistant = [...messages].reverse().find((m) => m.role === "assistant");
  const cited = citation?.messageId ? messages.find((m) => m.id === citation.messageId) : null;
  const shownSources =
    (citation && !citation.messageId ? chat.turn?.sources : cited?.sources) ??
    (chat.turn?.sources.length ? chat.turn.sources : lastAssistant?.sources) ??
    [];

  const openCitation = (messageId: string | null, n: number) => {
    setCitation({ messageId, n });
    setPanel("sources");
    setPanelOpen(true);
  };
  const saveArtifact = async (messageId: string) => {
    // Titled after the question it answers (the server would take the answer's first words).
    const index = messages.findIndex((m) => m.id === messageId);
    const question = messages
      .slice(0, index)
      .findLast((m) => m.role === "user")
      ?.content.trim();
    const result = await api.POST("/api/artifacts", {
      body: { message_id: messageId, kind: "markdown", title: question?.slice(0, 120) },
    });
    if (!result.data) {
      setArtifactError(errorMessage(result.error, "The artifact could not be saved"));
      return;
    }
    setArtifactError(null);
    void queryClient.invalidateQueries({ queryKey: ["artifacts"] });
    setArtifactId(result.data.id);
    setPanel("artifacts");
    setPanelOpen(true);
  };

  const banner = chat.banner;
  return (
    <div
      className={`chat-layout${panelOpen ? " panel-open" : ""}${sidebarOpen ? " sidebar-open" : ""}`}
    >
      <div className="sidebar-wrap">
        <ConversationSidebar activeId={conversationId} />
      </div>
      <section className="chat-main" aria-label="Chat">
        <div className="chat-toolbar">
          <button
            type="button"
            className="small ghost mobile-only"
            aria-expanded={sidebarOpen}
            onClick={() => setSidebarOpen(!sidebarOpen)}
          >
            Conversations
          </button>
          <h1 className="chat-title">{conversation.data?.title ?? "New conversation"}</h1>
          <button
            type="button"
            className="small ghost"
            aria-expanded={panelOpen}
            onClick={() => setPanelOpen(!panelOpen)}
          >
            {panelOpen ? "Hide panel" : "Sources & artifacts"}
          </button>
        </div>
        {artifactError && (
          <p className="error-banner" role="alert">
            {artifactError}
            <button type="button" className="small ghost" onClick={() => setArtifactError(null)}>
              Dismiss
            </button>
          </p>
        )}
        {conversation.isError && (
          <p className="error-banner" role="alert">
            {(conversation.error as Error).message}
          </p>
        )}
        <MessageList
          messages={conversationId ? messages : []}
          turn={chat.turn}
          onCite={openCitation}
          onSaveArtifact={(id) => void saveArtifact(id)}
          footer={
            banner && (
              <div className="error-banner" role="alert">
                <span>{banner.message}</span>
                <span className="row-actions">
                  {banner.retryable && (
                    <button type="button" className="small" onClick={chat.retry}>
                      Retry
                    </button>
                  )}
                  <button type="button" className="small ghost" onClick={chat.dismissBanner}>
                    Dismiss
                  </button>
                </span>
              </div>
            )
          }
        />
        <details className="settings-details">
          <summary>
            Settings:{" "}
            {projects.data?.find((p) => p.id === settings.projectId)?.name ?? "no project"}
            {settings.projectId && !settings.useRag ? " (documents off)" : ""}
          </summary>
          <ChatSettings
            settings={settings}
            projects={projects.data ?? []}
            projectLocked={Boolean(conversationId)}
            onChange={updateSettings}
          />
        </details>
        <Composer busy={busy} onSend={send} onStop={chat.stop} />
      </section>
      <aside className="side-panel" aria-label="Sources and artifacts">
        <div className="tabs" role="tablist">
          {(["sources", "artifacts"] as const).map((name) => (
            <button
              key={name}
              type="button"
              role="tab"
              aria-selected={panel === name}
              className={panel === name ? "tab active" : "tab"}
              onClick={() => setPanel(name)}
            >
              {name === "sources"
                ? `Sources${shownSources.length ? ` (${shownSources.length})` : ""}`
                : "Artifacts"}
            </button>
          ))}
        </div>
        <div className="panel-body" role="tabpanel">
          {panel === "sources" ? (
            <SourcesPanel sources={shownSources} selected={citation?.n ?? null} />
          ) : (
            <ArtifactsPanel
              conversationId={conversationId}
              projectId={settings.projectId}
              selectedId={artifactId}
              onSelect={setArtifactId}
            />
          )}
        </div>
      </aside>
    </div>
  );
}

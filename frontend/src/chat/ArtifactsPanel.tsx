import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, download, unwrap } from "../api/client";
import { ConfirmDialog } from "../components/Dialog";
import { LazyMarkdown } from "../components/LazyMarkdown";

type Props = {
  conversationId?: string;
  projectId: string | null;
  selectedId: string | null;
  onSelect: (id: string | null) => void;
};

const artifactPath = (id: string) => ({ params: { path: { artifact_id: id } } });

function ArtifactView({ id, onClosed }: { id: string; onClosed: () => void }) {
  const queryClient = useQueryClient();
  const [editing, setEditing] = useState<string | null>(null);
  const [viewVersion, setViewVersion] = useState<number | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const artifact = useQuery({
    queryKey: ["artifact", id],
    queryFn: async () => unwrap(await api.GET("/api/artifacts/{artifact_id}", artifactPath(id))),
  });
  const versions = useQuery({
    queryKey: ["artifact", id, "versions"],
    queryFn: async () =>
      unwrap(await api.GET("/api/artifacts/{artifact_id}/versions", artifactPath(id))),
  });
  const changed = () => {
    setError(null);
    setViewVersion(null);
    void queryClient.invalidateQueries({ queryKey: ["artifact", id] });
    void queryClient.invalidateQueries({ queryKey: ["artifacts"] });
  };
  const onError = (failure: Error) => setError(failure.message);
  const save = useMutation({
    mutationFn: async (content: string) =>
      unwrap(
        await api.PATCH("/api/artifacts/{artifact_id}", { ...artifactPath(id), body: { content } }),
      ),
    onSuccess: () => {
      setEditing(null);
      changed();
    },
    onError,
  });
  const regenerate = useMutation({
    mutationFn: async () =>
      unwrap(await api.POST("/api/artifacts/{artifact_id}/regenerate", artifactPath(id))),
    onSuccess: changed,
    onError,
  });
  const remove = useMutation({
    mutationFn: async () =>
      unwrap(await api.DELETE("/api/artifacts/{artifact_id}", artifactPath(id))),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ["artifacts"] });
      onClosed();
    },
    onError,
  });

  const data = artifact.data;
  if (!data) return <p>{artifact.isError ? (artifact.error as Error).message : "Loading…"}</p>;
  const shownVersion = versions.data?.find((v) => v.version === viewVersion);
  const content = shownVersion?.content ?? data.content;
  return (
    <section className="artifact" aria-label={`Artifact ${data.title}`}>
      <div className="artifact-head">
        <button type="button" className="small ghost" onClick={onClosed}>
          ← All artifacts
        </button>
        <h3>{data.title}</h3>
      </div>
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      <label>
        Version
        <select
          value={viewVersion ?? data.current_version}
          onChange={(event) => {
            const version = Number(event.target.value);
            setViewVersion(version === data.current_version ? null : version);
          }}
        >
          {[...(versions.data ?? [])].reverse().map((v) => (
            <option key={v.version} value={v.version}>
              v{v.version} · {v.origin} · {new Date(v.created_at).toLocaleString()}
              {v.version === data.current_version ? " (current)" : ""}
            </option>
          ))}
        </select>
      </label>
      {editing !== null ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            save.mutate(editing);
          }}
        >
          <label>
            Content (Markdown)
            <textarea
              className="artifact-editor"
              value={editing}
              rows={14}
              onChange={(event) => setEditing(event.target.value)}
            />
          </label>
          <div className="row-actions">
            <button type="button" onClick={() => setEditing(null)}>
              Cancel
            </button>
            <button type="submit" className="primary" disabled={save.isPending}>
              Save as new version
            </button>
          </div>
        </form>
      ) : (
        <>
          <div className="artifact-content">
            <LazyMarkdown text={content} />
          </div>
          <div className="row-actions wrap">
            {shownVersion ? (
              <button type="button" onClick={() => save.mutate(shownVersion.content)}>
                Restore v{shownVersion.version}
              </button>
            ) : (
              <button type="button" onClick={() => setEditing(data.content)}>
                Edit
              </button>
            )}
            <button
              type="button"
              onClick={() => regenerate.mutate()}
              disabled={regenerate.isPending || !data.request}
              title={data.request ? undefined : "Only artifacts made on request can be regenerated"}
            >
              {regenerate.isPending ? "Regenerating…" : "Regenerate"}
            </button>
            <button
              type="button"
              onClick={() =>
                void download(
                  `/api/artifacts/${id}/export${viewVersion ? `?version=${viewVersion}` : ""}`,
                  "artifact.md",
                ).catch(onError)
              }
            >
              Download
            </button>
            <button type="button" className="danger" onClick={() => setConfirmDelete(true)}>
              Delete
            </button>
          </div>
        </>
      )}
      <ConfirmDialog
        open={confirmDelete}
        title="Delete artifact?"
        message={`"${data.title}" and all its versions will be deleted.`}
        confirmLabel="Delete artifact"
        onCancel={() => setConfirmDelete(false)}
        onConfirm={() => {
          setConfirmDelete(false);
          remove.mutate();
        }}
      />
    </section>
  );
}

export function ArtifactsPanel({ conversationId, projectId, selectedId, onSelect }: Props) {
  const queryClient = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const list = useQuery({
    queryKey: ["artifacts", conversationId],
    enabled: Boolean(conversationId),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/artifacts", { params: { query: { conversation_id: conversationId } } }),
      ),
  });
  const create = useMutation({
    mutationFn: async (request: string) =>
      unwrap(
        await api.POST("/api/artifacts", {
          body: {
            request,
            conversation_id: conversationId ?? null,
            project_id: projectId,
            kind: "markdown",
          },
        }),
      ),
    onSuccess: (artifact) => {
      setError(null);
      void queryClient.invalidateQueries({ queryKey: ["artifacts"] });
      onSelect(artifact.id);
    },
    onError: (failure: Error) => setError(failure.message),
  });

  if (selectedId) return <ArtifactView id={selectedId} onClosed={() => onSelect(null)} />;
  return (
    <section aria-label="Artifacts">
      {!conversationId && (
        <p className="empty">Artifacts belong to a conversation: ask a question first.</p>
      )}
      {conversationId && (
        <form
          className="artifact-request"
          onSubmit={(event) => {
            event.preventDefault();
            const form = event.currentTarget;
            const request = String(new FormData(form).get("request")).trim();
            if (request) create.mutate(request, { onSuccess: () => form.reset() });
          }}
        >
          <label>
            Make an artifact
            <input
              name="request"
              placeholder="e.g. a FAQ from these documents"
              maxLength={8000}
              required
            />
          </label>
          <button type="submit" disabled={create.isPending}>
            {create.isPending ? "Writing…" : "Create"}
          </button>
        </form>
      )}
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      {list.data?.length === 0 && (
        <p className="empty">No artifacts yet. Save an answer, or ask for one above.</p>
      )}
      <ul className="artifact-list">
        {list.data?.map((artifact) => (
          <li key={artifact.id}>
            <button type="button" className="link-button" onClick={() => onSelect(artifact.id)}>
              {artifact.title}
            </button>
            <span className="hint">
              {" "}
              v{artifact.current_version} · {new Date(artifact.updated_at).toLocaleDateString()}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

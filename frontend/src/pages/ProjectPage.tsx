import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type DragEvent, useRef, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { api, type DocumentInfo, errorMessage, type UploadedDocument, unwrap } from "../api/client";
import { authFetch } from "../api/session";
import { ConfirmDialog } from "../components/Dialog";

const ACCEPT = ".pdf,.docx,.md,.markdown,.html,.htm,.txt";

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** One upload request per file, so one refused file (415, 413) names itself and the
 * others still go in. */
async function uploadOne(projectId: string, file: File): Promise<UploadedDocument[]> {
  const body = new FormData();
  body.append("files", file);
  const response = await authFetch(`/api/projects/${projectId}/documents`, {
    method: "POST",
    body,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${file.name}: ${errorMessage(data, response.statusText)}`);
  return data as UploadedDocument[];
}

export function DocumentRow({
  document,
  onDelete,
}: {
  document: DocumentInfo;
  onDelete: () => void;
}) {
  const busy = document.status === "queued" || document.status === "processing";
  return (
    <li className="card document-row">
      <div className="document-main">
        <span className="document-name">{document.filename}</span>
        <span className="hint">
          {document.kind} · {formatSize(document.size_bytes)}
          {document.page_count ? ` · ${plural(document.page_count, "page")}` : ""}
          {document.status === "ready" ? ` · ${plural(document.chunk_count, "passage")}` : ""}
        </span>
        {busy && (
          <progress
            max={100}
            value={document.progress}
            aria-label={`${document.filename}: ${document.progress}% processed`}
          >
            {document.progress}%
          </progress>
        )}
        {document.status === "failed" && (
          <p className="error-text" role="alert">
            Failed: {document.error ?? "unknown reason"}
          </p>
        )}
      </div>
      <span className={`status status-${document.status}`}>{document.status}</span>
      <button
        type="button"
        className="danger small"
        onClick={onDelete}
        aria-label={`Delete ${document.filename}`}
      >
        Delete
      </button>
    </li>
  );
}

export function ProjectPage() {
  const { projectId = "" } = useParams();
  const queryClient = useQueryClient();
  const input = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);
  const [deleting, setDeleting] = useState<DocumentInfo | null>(null);
  const path = { params: { path: { project_id: projectId } } };

  const project = useQuery({
    queryKey: ["project", projectId],
    queryFn: async () => unwrap(await api.GET("/api/projects/{project_id}", path)),
  });
  const documents = useQuery({
    queryKey: ["documents", projectId],
    queryFn: async () => unwrap(await api.GET("/api/projects/{project_id}/documents", path)),
    // Poll while something is being processed.
    refetchInterval: (query) =>
      query.state.data?.some((d) => d.status === "queued" || d.status === "processing")
        ? 1000
        : false,
  });
  const upload = useMutation({
    mutationFn: async (files: File[]) => {
      const results = await Promise.allSettled(files.map((file) => uploadOne(projectId, file)));
      return results.flatMap((r) => (r.status === "rejected" ? [(r.reason as Error).message] : []));
    },
    onSuccess: (failures) => {
      setErrors(failures);
      void queryClient.invalidateQueries({ queryKey: ["documents", projectId] });
    },
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/projects/{project_id}/documents/{document_id}", {
          params: { path: { project_id: projectId, document_id: id } },
        }),
      ),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ["documents", projectId] }),
    onError: (failure: Error) => setErrors([failure.message]),
  });

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    const files = [...event.dataTransfer.files];
    if (files.length) upload.mutate(files);
  };

  if (project.isError)
    return <p className="error-banner page">{(project.error as Error).message}</p>;
  return (
    <div className="page">
      <p>
        <Link to="/projects">← Projects</Link>
      </p>
      <h1>{project.data?.name ?? "…"}</h1>
      {project.data?.description && <p className="hint">{project.data.description}</p>}
      <p>
        <Link className="button primary" to={`/chat?project=${projectId}`}>
          Chat with this project
        </Link>
      </p>
      <section
        className={`dropzone${dragging ? " dragging" : ""}`}
        aria-label="Upload documents"
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <p>Drop PDF, Word, Markdown, HTML or text files here, or</p>
        <button type="button" onClick={() => input.current?.click()} disabled={upload.isPending}>
          {upload.isPending ? "Uploading…" : "Choose files"}
        </button>
        <input
          ref={input}
          type="file"
          multiple
          accept={ACCEPT}
          hidden
          data-testid="file-input"
          onChange={(event) => {
            const files = [...(event.target.files ?? [])];
            event.target.value = "";
            if (files.length) upload.mutate(files);
          }}
        />
      </section>
      {errors.length > 0 && (
        <div className="error-banner" role="alert">
          {errors.map((message) => (
            <p key={message}>{message}</p>
          ))}
        </div>
      )}
      <h2>Documents</h2>
      {documents.data?.length === 0 && <p className="empty">No documents yet.</p>}
      <ul className="card-list" aria-label="Documents">
        {documents.data?.map((document) => (
          <DocumentRow
            key={document.id}
            document={document}
            onDelete={() => setDeleting(document)}
          />
        ))}
      </ul>
      <ConfirmDialog
        open={deleting !== null}
        title="Delete document?"
        message={`"${deleting?.filename}" and its passages will be deleted.`}
        confirmLabel="Delete document"
        onCancel={() => setDeleting(null)}
        onConfirm={() => {
          if (deleting) remove.mutate(deleting.id);
          setDeleting(null);
        }}
      />
    </div>
  );
}

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link } from "react-router-dom";
import { api, type Project, unwrap } from "../api/client";
import { ConfirmDialog, Dialog } from "../components/Dialog";

export function useProjects() {
  return useQuery({
    queryKey: ["projects"],
    queryFn: async () => unwrap(await api.GET("/api/projects")),
  });
}

export function ProjectsPage() {
  const queryClient = useQueryClient();
  const projects = useProjects();
  const [error, setError] = useState<string | null>(null);
  const [renaming, setRenaming] = useState<Project | null>(null);
  const [deleting, setDeleting] = useState<Project | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["projects"] });
  const onError = (failure: Error) => setError(failure.message);

  const create = useMutation({
    mutationFn: async (body: { name: string; description: string }) =>
      unwrap(await api.POST("/api/projects", { body })),
    onSuccess: () => {
      setError(null);
      void refresh();
    },
    onError,
  });
  const rename = useMutation({
    mutationFn: async ({ id, name }: { id: string; name: string }) =>
      unwrap(
        await api.PATCH("/api/projects/{project_id}", {
          params: { path: { project_id: id } },
          body: { name },
        }),
      ),
    onSuccess: () => {
      setRenaming(null);
      void refresh();
    },
    onError,
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/projects/{project_id}", { params: { path: { project_id: id } } }),
      ),
    onSuccess: () => void refresh(),
    onError,
  });

  const onCreate = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    create.mutate(
      { name: String(data.get("name")), description: String(data.get("description") ?? "") },
      { onSuccess: () => form.reset() },
    );
  };

  return (
    <div className="page">
      <h1>Projects</h1>
      <p className="hint">A project is a set of documents you can chat with.</p>
      {error && (
        <p className="error-banner" role="alert">
          {error}
        </p>
      )}
      <form className="card inline-form" onSubmit={onCreate} aria-label="New project">
        <label>
          Name
          <input name="name" required maxLength={200} />
        </label>
        <label>
          Description
          <input name="description" maxLength={2000} />
        </label>
        <button type="submit" className="primary" disabled={create.isPending}>
          Create project
        </button>
      </form>
      {projects.isPending && <p>Loading…</p>}
      {projects.data?.length === 0 && <p className="empty">No projects yet: create one above.</p>}
      <ul className="card-list">
        {projects.data?.map((project) => (
          <li key={project.id} className="card project-card">
            <div>
              <Link to={`/projects/${project.id}`} className="project-name">
                {project.name}
              </Link>
              {project.description && <p className="hint">{project.description}</p>}
            </div>
            <div className="row-actions">
              <Link className="button" to={`/chat?project=${project.id}`}>
                Chat
              </Link>
              <button type="button" onClick={() => setRenaming(project)}>
                Rename
              </button>
              <button type="button" className="danger" onClick={() => setDeleting(project)}>
                Delete
              </button>
            </div>
          </li>
        ))}
      </ul>
      <Dialog open={renaming !== null} title="Rename project" onClose={() => setRenaming(null)}>
        <form
          onSubmit={(event) => {
            event.preventDefault();
            const name = String(new FormData(event.currentTarget).get("name"));
            if (renaming) rename.mutate({ id: renaming.id, name });
          }}
        >
          <label>
            New name
            <input name="name" defaultValue={renaming?.name} required maxLength={200} />
          </label>
          <div className="dialog-actions">
            <button type="button" onClick={() => setRenaming(null)}>
              Cancel
            </button>
            <button type="submit" className="primary">
              Save
            </button>
          </div>
        </form>
      </Dialog>
      <ConfirmDialog
        open={deleting !== null}
        title="Delete project?"
        message={`"${deleting?.name}" will be deleted with its documents and conversations. This cannot be undone.`}
        confirmLabel="Delete project"
        onCancel={() => setDeleting(null)}
        onConfirm={() => {
          if (deleting) remove.mutate(deleting.id);
          setDeleting(null);
        }}
      />
    </div>
  );
}

import type { Project } from "../api/client";

export type Settings = {
  projectId: string | null;
  useRag: boolean;
  maxPassages: number;
  minSimilarity: number;
};

export const DEFAULT_SETTINGS: Omit<Settings, "projectId"> = {
  useRag: true,
  maxPassages: 6,
  minSimilarity: 0.2,
};

// The backend keeps a conversation's project, not these knobs: they are kept per
// conversation in this browser.
const key = (conversationId: string) => `kt.chat-settings.${conversationId}`;

export function loadSettings(conversationId: string | undefined): Omit<Settings, "projectId"> {
  if (!conversationId) return DEFAULT_SETTINGS;
  try {
    return {
      ...DEFAULT_SETTINGS,
      ...JSON.parse(localStorage.getItem(key(conversationId)) ?? "{}"),
    };
  } catch {
    return DEFAULT_SETTINGS;
  }
}

export function saveSettings(conversationId: string, settings: Settings): void {
  const { useRag, maxPassages, minSimilarity } = settings;
  localStorage.setItem(key(conversationId), JSON.stringify({ useRag, maxPassages, minSimilarity }));
}

type Props = {
  settings: Settings;
  projects: Project[];
  projectLocked: boolean;
  onChange: (settings: Settings) => void;
};

export function ChatSettings({ settings, projects, projectLocked, onChange }: Props) {
  const set = (change: Partial<Settings>) => onChange({ ...settings, ...change });
  return (
    <fieldset className="chat-settings">
      <legend>Chat settings</legend>
      <label>
        Project
        <select
          value={settings.projectId ?? ""}
          disabled={projectLocked}
          aria-describedby={projectLocked ? "project-locked" : undefined}
          onChange={(event) => set({ projectId: event.target.value || null })}
        >
          <option value="">No project (no documents)</option>
          {projects.map((project) => (
            <option key={project.id} value={project.id}>
              {project.name}
            </option>
          ))}
        </select>
      </label>
      {projectLocked && (
        <span id="project-locked" className="hint">
          A conversation stays in its project.
        </span>
      )}
      <label className="checkbox">
        <input
          type="checkbox"
          checked={settings.useRag}
          disabled={!settings.projectId}
          onChange={(event) => set({ useRag: event.target.checked })}
        />
        Use documents
      </label>
      <label>
        Max passages
        <input
          type="number"
          min={1}
          max={20}
          value={settings.maxPassages}
          onChange={(event) =>
            set({ maxPassages: Math.min(20, Math.max(1, Number(event.target.value) || 1)) })
          }
        />
      </label>
      <label>
        Min similarity
        <input
          type="number"
          min={0}
          max={1}
          step={0.05}
          value={settings.minSimilarity}
          onChange={(event) =>
            set({ minSimilarity: Math.min(1, Math.max(0, Number(event.target.value) || 0)) })
          }
        />
      </label>
    </fieldset>
  );
}

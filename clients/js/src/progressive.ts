// Progressive loading into an <img>: its box is reserved at the job's aspect ratio first
// (so nothing around it moves), then it shows each live preview while the job runs, the
// image's placeholder blurred while the final PNG downloads, and the final image, the blur
// easing away. A job already finished goes straight from placeholder to final.
import { throwIfAborted } from "./abort.js";
import { isFinal, type Image, type Job } from "./types.js";
import type { SubscribeHandlers } from "./sink.js";
import type { SubscribeOptions } from "./subscribe.js";

export type Stage = "placeholder" | "preview" | "final";

/** The subscriber's callbacks (onQueue, onProgress, onPreview, onEvent) are passed on while
 * the job runs. */
export interface ProgressiveOptions extends SubscribeHandlers {
  /** Which of the job's images (default 0). */
  index?: number;
  /** The blur-to-sharp transition, in ms (default 300). */
  transitionMs?: number;
  /** The placeholder's blur in CSS pixels (default 12); previews get a third of it. */
  blurPx?: number;
  signal?: AbortSignal;
  /** Told of each picture as it is shown. */
  onStage?: (stage: Stage, src: string) => void;
  /** Loads (and decodes) a picture before it is shown; the default uses `new Image()`. */
  load?: (url: string) => Promise<void>;
}

/** What progressiveImage needs of a client. */
export interface JobSource {
  getJob(id: string, signal?: AbortSignal): Promise<Job>;
  follow(id: string, options: SubscribeOptions): Promise<Job>;
}

const RANK: Record<Stage, number> = { placeholder: 0, preview: 1, final: 2 };

export async function progressiveImage(
  img: HTMLImageElement,
  jobOrId: Job | string,
  source: JobSource,
  options: ProgressiveOptions = {},
): Promise<Job> {
  const { signal } = options;
  let job = typeof jobOrId === "string" ? await source.getJob(jobOrId, signal) : jobOrId;
  const painter = new Painter(img, options);
  reserve(img, job);
  if (!isFinal(job)) {
    const previews: Promise<void>[] = [];
    const onPreview: SubscribeHandlers["onPreview"] = (url, update) => {
      previews.push(painter.paint(url, "preview"));
      options.onPreview?.(url, update);
    };
    const { onQueue, onProgress, onEvent } = options;
    job = await source.follow(job.id, { signal, onPreview, onQueue, onProgress, onEvent });
    await Promise.all(previews);
  }
  const image: Image | undefined = job.images[options.index ?? 0];
  if (job.status !== "completed" || image === undefined) return job;
  if (!painter.showsPreview && image.placeholder) painter.show(image.placeholder.data_url, "placeholder");
  await painter.paint(image.url, "final", true);
  throwIfAborted(signal);
  return job;
}

/** Width and height attributes, and an aspect ratio that no picture's own ratio overrides
 * (a ThumbHash's is only close), so the box keeps its size from the first paint on. */
export function reserve(img: HTMLImageElement, size: { width: number; height: number }): void {
  if (!img.getAttribute("width")) img.setAttribute("width", String(size.width));
  if (!img.getAttribute("height")) img.setAttribute("height", String(size.height));
  img.style.aspectRatio = `${size.width} / ${size.height}`;
  img.style.objectFit = "cover";
  img.style.clipPath = "inset(0)"; // the blur stays inside the box
}

class Painter {
  readonly #img: HTMLImageElement;
  readonly #options: ProgressiveOptions;
  #ticket = 0;
  #shownTicket = -1;
  #shownRank = -1;

  constructor(img: HTMLImageElement, options: ProgressiveOptions) {
    this.#img = img;
    this.#options = options;
    img.style.transition = `filter ${options.transitionMs ?? 300}ms ease-out`;
  }

  get showsPreview(): boolean {
    return this.#shownRank === RANK.preview;
  }

  /** Loads the picture, then shows it unless something newer or better was shown meanwhile.
   * A preview that fails to load is skipped; the final image's failure is thrown. */
  async paint(url: string, stage: Stage, required = false): Promise<void> {
    const ticket = ++this.#ticket;
    try {
      await (this.#options.load ?? preload)(url);
    } catch (error) {
      if (required) throw error;
      return;
    }
    if (ticket > this.#shownTicket && RANK[stage] >= this.#shownRank) this.show(url, stage, ticket);
  }

  show(src: string, stage: Stage, ticket = ++this.#ticket): void {
    const blur = this.#options.blurPx ?? 12;
    const px = stage === "placeholder" ? blur : stage === "preview" ? blur / 3 : 0;
    this.#img.src = src;
    this.#img.style.filter = px > 0 ? `blur(${px}px)` : "none";
    this.#img.dataset["igStage"] = stage;
    this.#shownTicket = ticket;
    this.#shownRank = RANK[stage];
    this.#options.onStage?.(stage, src);
  }
}

function preload(url: string): Promise<void> {
  const loader = new Image();
  loader.decoding = "async";
  loader.src = url;
  return loader.decode();
}

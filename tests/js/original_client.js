// THE ORIGINAL DESIGN'S CLIENT, RECONSTRUCTED FOR THE TESTS.
//
// The original design of ImageGate describes a small JavaScript client for an app's page:
// generate(prompt, style) submits, waitForCompletion(jobId, maxAttempts, intervalMs) polls
// /status/{id}, and loadImageProgressive(imageUrl, placeholderUrl) shows a blurred
// placeholder until the full image loads. Its source is not in this repository, so this
// file rebuilds it from that description, bugs included (its cache is keyed by the prompt
// and style, which the status answer does not carry, so it never hits). It is kept
// unchanged on purpose: tests/test_cors.py runs it from a page of another origin to show
// that ImageGate's CORS lets it work as it is. The maintained version, with its bugs
// fixed, is ImageGenerationClient in clients/js (@imagegate/client).
class ImageGenerationClient {
  constructor(apiBaseUrl) {
    this.apiBaseUrl = apiBaseUrl;
    this.cache = new Map();
  }

  async generate(prompt, style = null) {
    const cacheKey = `${prompt}:${style}`;
    if (this.cache.has(cacheKey)) {
      return this.cache.get(cacheKey);
    }
    const response = await fetch(`${this.apiBaseUrl}/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt, style }),
    });
    if (!response.ok) {
      throw new Error(`Generation failed: ${response.status}`);
    }
    const data = await response.json();
    return data.job_id;
  }

  async waitForCompletion(jobId, maxAttempts = 60, intervalMs = 1000) {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const response = await fetch(`${this.apiBaseUrl}/status/${jobId}`);
      const status = await response.json();
      if (status.status === "completed") {
        this.cache.set(`${status.prompt}:${status.style}`, status.result_url);
        return status.result_url;
      }
      if (status.status === "failed") {
        throw new Error(status.error);
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
    throw new Error("Generation timed out");
  }

  loadImageProgressive(imageUrl, placeholderUrl) {
    const img = new Image();
    img.src = placeholderUrl;
    img.style.filter = "blur(10px)";
    const full = new Image();
    full.onload = () => {
      img.src = imageUrl;
      img.style.filter = "none";
    };
    full.src = imageUrl;
    return img;
  }
}

window.ImageGenerationClient = ImageGenerationClient;

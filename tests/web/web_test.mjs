// The web page in a real browser (Debian's headless chromium, driven by playwright-core) against a
// real `imgsearch serve` over a folder of JPEGs: search, open, more like this, upload, drop, +/−
// terms, folder filter, status, live indexing, other formats, videos (when ffmpeg is on the PATH),
// phone width. Screenshots go to OUT_DIR.
//
//   node web_test.mjs IMGSEARCH_BIN MODEL_DIR MAKE_PHOTO_FOLDER_BIN OUT_DIR
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [bin, modelDir, makePhotos, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SKIP = 77;  // ctest SKIP_RETURN_CODE

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.log(`SKIPPED: playwright-core is not installed (scripts/setup installs it): ${e.message}`);
  process.exit(SKIP);
}
if (!fs.existsSync(CHROMIUM)) {
  console.log(`SKIPPED: no chromium at ${CHROMIUM} (scripts/setup installs Debian's chromium)`);
  process.exit(SKIP);
}

let passed = 0, failed = 0;
const failures = [];
function check(cond, what) {
  if (cond) { passed++; console.log(`ok    ${what}`); } else { failed++; failures.push(what); console.log(`FAIL  ${what}`); }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "imgsearch-web-"));
fs.mkdirSync(outDir, { recursive: true });
const pics = path.join(work, "pics");
execFileSync(makePhotos, ["--out", pics, "--n", "24", "--seed", "3"]);
// A subfolder, for the folder filter.
fs.mkdirSync(path.join(pics, "trip"));
for (const f of fs.readdirSync(pics).filter((f) => f.endsWith(".jpg")).slice(0, 6)) {
  fs.renameSync(path.join(pics, f), path.join(pics, "trip", f));
}
const somePhoto = path.join(pics, fs.readdirSync(pics).filter((f) => f.endsWith(".jpg"))[0]);
// One photo in each format browsers cannot all show, added to the watched folder later on.
const formatsSrc = path.join(work, "formats");
const otherFormats = ["heic", "avif", "jxl", "dng", "png", "webp"];
execFileSync(makePhotos, ["--out", formatsSrc, "--n", String(otherFormats.length), "--seed", "5",
                          "--formats", otherFormats.join(","), "--max-side", "640"]);

const server = spawn(bin, ["serve", "--db", path.join(work, "db"), "--model", modelDir, "--offline", "--watch", pics,
                           "--listen", "127.0.0.1:0", "--quiet-ms", "100"], { stdio: ["ignore", "pipe", "pipe"] });
let out = "";
server.stdout.on("data", (d) => { out += d; });
server.stderr.on("data", (d) => { out += d; });

async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch (_) { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n--- server output ---\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let browser;
try {
  const base = await until("the server to listen", () => (out.match(/serving (http:\/\/[^/]+)\//) || [])[1]);
  const status = async () => (await fetch(`${base}/api/status`)).json();
  await until("the initial scan", async () => (await status()).collection.indexed === 24 && (await status()).ingest.idle);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const results = page.locator("[data-testid=result]");
  const firstIds = async () => page.$$eval("[data-testid=result]", (cards) => cards.map((c) => Number(c.dataset.id)));

  // Search as you type.
  await page.goto(base + "/");
  await page.fill("[data-testid=search-input]", "a red car in the snow");
  await until("text results", async () => (await results.count()) === 24);
  const thumbsLoaded = await until("thumbnails", () => page.$$eval("[data-testid=result] img",
    (imgs) => imgs.slice(0, 8).every((i) => i.complete && i.naturalWidth > 0)));
  check(thumbsLoaded, "text search shows 24 results with thumbnails");
  check(/24 results/.test(await page.textContent("[data-testid=message]")), "result count is shown");
  check(new URL(page.url()).searchParams.get("q") === "a red car in the snow", "the search is in the URL");
  await page.screenshot({ path: path.join(outDir, "search.png") });

  // Open a result: the full image and its details.
  const openedId = (await firstIds())[0];
  await results.first().click();
  await page.waitForSelector("[data-testid=viewer][open]");
  await until("the full image", () => page.$eval("[data-testid=viewer-image]", (i) => i.complete && i.naturalWidth > 0));
  check((await page.textContent("[data-testid=viewer-path]")).endsWith(".jpg"), "viewer shows the image and its path");
  await until("image details", async () => /JPEG/.test(await page.textContent("#viewer-meta")));
  const meta = await page.textContent("#viewer-meta");
  check(meta.includes(`#${openedId}`), `the viewer shows the image's id (${meta})`);
  check(/\d(\.\d)? (B|KB|MB)\b/.test(meta) && !/0\.0 MB/.test(meta), `the file size in a readable unit (${meta})`);
  await page.screenshot({ path: path.join(outDir, "viewer.png") });

  // More like this: the opened image is left out, the rest ranked by similarity.
  await page.click("[data-testid=viewer-similar]");
  await until("similar results", async () => (await results.count()) === 23);
  check(!(await firstIds()).includes(openedId), "more like this lists the others, not the image itself");
  check((await page.locator("[data-testid=term]").count()) === 1, "more like this shows the image as a term");
  const api = await (await fetch(`${base}/api/images/${openedId}/similar?k=23`)).json();
  check(JSON.stringify(api.results.map((r) => r.id)) === JSON.stringify(await firstIds()),
        "the page shows the API's similar ranking");
  await page.screenshot({ path: path.join(outDir, "similar.png") });

  // Search by an uploaded image: that very image comes first with score 1.
  await page.goto(base + "/");
  await page.setInputFiles("[data-testid=file-input]", somePhoto);
  await until("upload results", async () => (await results.count()) === 24);
  const top = await page.$eval("[data-testid=result]", (c) => [c.title, c.querySelector(".score").textContent]);
  check(top[0] === somePhoto && top[1] === "1.000", `uploaded image finds itself first (${top.join(" ")})`);
  await page.screenshot({ path: path.join(outDir, "upload.png") });

  // Drop an image onto the page: the same.
  await page.goto(base + "/");
  const bytes = fs.readFileSync(somePhoto).toString("base64");
  await page.evaluate(async (b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], "dropped.jpg", { type: "image/jpeg" }));
    document.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, bytes);
  await until("drop results", async () => (await results.count()) === 24);
  check((await page.$eval("[data-testid=result]", (c) => c.title)) === somePhoto, "a dropped image searches by it");

  // A file that is not an image: a clear error, no crash.
  await page.goto(base + "/");
  await page.setInputFiles("[data-testid=file-input]", { name: "fake.png", mimeType: "image/png", buffer: Buffer.from("not really a png") });
  await until("the upload error", async () => /not an image/.test(await page.textContent("[data-testid=message]")));
  check(await page.$eval("[data-testid=message]", (m) => m.classList.contains("error")), "a broken upload shows the server's error");

  // +/− terms change the ranking; the sign toggles.
  await page.goto(base + "/?q=beach");
  await until("results", async () => (await results.count()) === 24);
  const before = await firstIds();
  await page.click("[data-testid=add-term]");
  await page.fill("[data-testid=term] input", "people");
  await page.click("[data-testid=term] .sign");
  check(await page.$eval("[data-testid=term]", (c) => c.classList.contains("negative")), "a term can be made negative");
  const negBody = { terms: [{ text: "beach", weight: 1 }, { text: "people", weight: -1 }], k: 60 };
  const expected = (await (await fetch(`${base}/api/search`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                               body: JSON.stringify(negBody) })).json()).results.map((r) => r.id);
  await until("the −term ranking", async () => JSON.stringify(await firstIds()) === JSON.stringify(expected));
  check(JSON.stringify(before) !== JSON.stringify(expected), "beach − people ranks differently from beach");
  await page.screenshot({ path: path.join(outDir, "terms.png") });

  // Folder filter.
  await page.goto(base + "/?q=beach");
  await page.click("[data-testid=filters]");
  await page.fill("[data-testid=filter-under]", path.join(pics, "trip"));
  await page.press("[data-testid=filter-under]", "Enter");
  await page.dispatchEvent("[data-testid=filter-under]", "change");
  await until("filtered results", async () => (await results.count()) === 6);
  const titles = await page.$$eval("[data-testid=result]", (cards) => cards.map((c) => c.title));
  check(titles.every((t) => t.startsWith(path.join(pics, "trip") + "/")), "folder filter keeps only that folder");

  // Status panel (opened by its link), and live indexing of a new file.
  await page.goto(base + "/#status");
  await until("the status panel", async () => /Indexed\s*24/.test(await page.textContent("[data-testid=status-panel]")));
  check(true, "/#status opens the status panel, which shows the indexed count");
  await page.click("[data-testid=status-pill]");
  check(new URL(page.url()).hash === "" && await page.$eval("[data-testid=status-panel]", (p) => p.hidden), "the pill closes it, and the URL says so");
  await page.click("[data-testid=status-pill]");
  check(new URL(page.url()).hash === "#status", "the open panel is in the URL");
  fs.copyFileSync(somePhoto, path.join(pics, "new-copy.jpg"));
  await until("the new image in the status", async () => /Indexed\s*25/.test(await page.textContent("[data-testid=status-panel]")));
  check(/25 images/.test(await page.textContent("[data-testid=status-pill]")), "a file added to the folder shows up live");
  fs.writeFileSync(path.join(pics, "broken.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  await until("the failure in the pill", async () => /25 images · 1 failed/.test(await page.textContent("[data-testid=status-pill]")));
  check(true, "a file that cannot be read shows in the status pill");
  await page.screenshot({ path: path.join(outDir, "status.png") });

  // Every format: HEIC, AVIF, JPEG XL, camera RAW, PNG, WebP, each shown in the grid and the viewer
  // (through the server's JPEG rendition where the browser cannot display the file).
  const formatsDir = path.join(pics, "formats");
  fs.mkdirSync(formatsDir);
  for (const f of fs.readdirSync(formatsSrc)) fs.copyFileSync(path.join(formatsSrc, f), path.join(formatsDir, f));
  const total = 25 + otherFormats.length;
  await until("the other formats indexed", async () => (await status()).collection.indexed === total, 60000);
  const formatCounts = (await status()).collection.formats;
  check(otherFormats.every((f) => formatCounts[{ heic: "heif", dng: "raw" }[f] || f] === 1),
        `the status counts images by format (${JSON.stringify(formatCounts)})`);
  await page.goto(base + "/?q=photo");
  await page.click("[data-testid=filters]");
  await page.fill("[data-testid=filter-under]", formatsDir);
  await page.press("[data-testid=filter-under]", "Enter");
  await page.dispatchEvent("[data-testid=filter-under]", "change");
  await until("the formats folder", async () => (await results.count()) === otherFormats.length);
  const gridShown = await until("every format's thumbnail", () => page.$$eval("[data-testid=result] img",
    (imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)));
  check(gridShown, "every format shows in the grid");
  await page.screenshot({ path: path.join(outDir, "formats.png") });
  for (let i = 0; i < otherFormats.length; i++) {
    await results.nth(i).click();
    await page.waitForSelector("[data-testid=viewer][open]");
    const name = await page.textContent("[data-testid=viewer-path]");
    const shown = await until(`the viewer's image of ${name}`,
      () => page.$eval("[data-testid=viewer-image]", (img) => img.complete && img.naturalWidth > 0));
    check(shown, `the viewer shows ${path.basename(name)}`);
    await page.keyboard.press("Escape");
    await until("the viewer to close", () => page.$eval("[data-testid=viewer]", (v) => !v.open));
  }
  // A HEIC dropped on the page (browsers give it no image type) searches like any other image.
  const heic = fs.readdirSync(formatsDir).find((f) => f.endsWith(".heic"));
  await page.goto(base + "/");
  await page.setInputFiles("[data-testid=file-input]", { name: "IMG_0001.HEIC", mimeType: "",
                                                         buffer: fs.readFileSync(path.join(formatsDir, heic)) });
  await until("HEIC upload results", async () => (await results.count()) > 0);
  const heicTop = await page.$eval("[data-testid=result]", (c) => [c.title, c.querySelector(".score").textContent]);
  check(heicTop[0] === path.join(formatsDir, heic) && heicTop[1] === "1.000",
        `an uploaded HEIC finds itself first (${heicTop.join(" ")})`);

  // Videos, added live: an MP4 (its index at the end, as phones write them) plays in the viewer from
  // its best moment and seeks (the server answers range requests); a Matroska file, which not every
  // browser plays, shows the frame of each moment. Both show their frame and time in the grid.
  let haveFfmpeg = true;
  try { execFileSync("ffmpeg", ["-version"], { stdio: "ignore" }); } catch (_) { haveFfmpeg = false; }
  if (!haveFfmpeg) {
    console.log("SKIPPED the video checks: no ffmpeg on the PATH");
  } else {
    const videosSrc = path.join(work, "videos-src");
    fs.mkdirSync(videosSrc);
    const makeVideo = (source, seconds, file) => execFileSync("ffmpeg", ["-v", "error", "-f", "lavfi",
      "-i", `${source}=size=320x240:rate=25`, "-t", String(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25",
      path.join(videosSrc, file)]);
    makeVideo("testsrc2", 6, "clip.mp4");
    makeVideo("testsrc", 4, "clip.mkv");
    const videosDir = path.join(pics, "videos");
    fs.mkdirSync(videosDir);
    for (const f of ["clip.mp4", "clip.mkv"]) fs.renameSync(path.join(videosSrc, f), path.join(videosDir, f));
    await until("the videos indexed", async () => (await status()).collection.indexed === total + 2, 60000);
    check(await until("the videos counted in the pill", async () =>
      new RegExp(`^${total} images · 2 videos`).test(await page.textContent("[data-testid=status-pill]"))),
          `the status pill counts the videos apart (${await page.textContent("[data-testid=status-pill]")})`);
    const mp4 = path.join(videosDir, "clip.mp4"), mkv = path.join(videosDir, "clip.mkv");

    await page.goto(`${base}/?q=a+video`);
    await until("the results with the videos", async () => (await results.count()) === total + 2);
    const cards = await until("the videos' frames", () => page.$$eval("[data-testid=result][data-time]", (cs) => {
      const all = cs.map((c) => ({ id: Number(c.dataset.id), time: Number(c.dataset.time), title: c.title,
                                   badge: c.querySelector(".badge.time")?.textContent,
                                   shown: c.querySelector("img").complete && c.querySelector("img").naturalWidth > 0 }));
      return all.length === 2 && all.every((c) => c.shown) && all;
    }));
    const clock = (t) => `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;
    check(cards.every((c) => c.badge === `▶${clock(c.time)}` && c.title.endsWith(` at ${clock(c.time)}`)),
          `video cells show their frame, a time badge and the time in the tooltip (${cards.map((c) => `${c.badge} "${c.title}"`).join(", ")})`);
    await page.locator("[data-testid=result][data-time]").first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(outDir, "videos.png") });
    const mp4Card = cards.find((c) => c.title.startsWith(mp4 + " "));
    const mkvCard = cards.find((c) => c.title.startsWith(mkv + " "));

    // The server answers a range request for the video with just those bytes.
    const ranged = await fetch(`${base}/api/images/${mp4Card.id}/view`, { headers: { Range: "bytes=100-199" } });
    const rangedBytes = (await ranged.arrayBuffer()).byteLength;
    check(ranged.status === 206 && rangedBytes === 100 && ranged.headers.get("content-type") === "video/mp4" &&
          ranged.headers.get("content-range") === `bytes 100-199/${fs.statSync(mp4).size}`,
          `the MP4 is served in ranges (${ranged.status}, ${rangedBytes} bytes, ${ranged.headers.get("content-type")}, ${ranged.headers.get("content-range")})`);

    // The MP4 plays in the viewer, from its best moment, and seeks to each other moment.
    await page.click(`[data-testid=result][data-id="${mp4Card.id}"]`);
    await page.waitForSelector("[data-testid=viewer][open]");
    const video = "[data-testid=viewer-video]";
    const loaded = await until("the video's metadata", () => page.$eval(video, (v) => !v.hidden && v.readyState >= 1 && {
      src: v.src, time: v.currentTime, duration: v.duration,
      seekable: [...Array(v.seekable.length).keys()].map((i) => [v.seekable.start(i), v.seekable.end(i)]),
    }), 30000);
    check(new URL(loaded.src).pathname === `/api/images/${mp4Card.id}/view`, `the viewer plays the video's view_url (${loaded.src})`);
    check(Math.abs(loaded.time - mp4Card.time) < 0.1, `the video opens at its best moment (${loaded.time} s, the hit's ${mp4Card.time} s)`);
    check(loaded.seekable.some(([a, b]) => a <= 0.01 && b >= loaded.duration - 0.1) && loaded.duration > 5,
          `the whole video is seekable (${JSON.stringify(loaded.seekable)} of ${loaded.duration} s)`);
    const moments = await page.$$eval("[data-testid=moment]", (bs) => bs.map((b) => ({ time: Number(b.dataset.time), label: b.textContent })));
    check(moments.length >= 2 && moments.every((m) => m.label === clock(m.time)),
          `the viewer lists the video's moments (${moments.map((m) => m.label).join(" ")})`);
    const away = (m) => Math.abs(m.time - mp4Card.time) > 0.5;
    const other = moments.find((m) => away(m) && m.time > 0) || moments.find(away);  // a real seek, not a rewind
    if (other) {
      await page.click(`[data-testid=moment][data-time="${other.time}"]`);
      const seeked = await until("the seek", () => page.$eval(video, (v, t) => Math.abs(v.currentTime - t) < 0.1 && !v.seeking &&
                                                                      { time: v.currentTime }, other.time));
      check(await page.$eval(`[data-testid=moment][data-time="${other.time}"]`, (b) => b.getAttribute("aria-pressed") === "true"),
            `a moment's button seeks the video there (${seeked.time} s) and shows it pressed`);
    } else {
      check(false, "the video has a second moment to seek to");
    }
    await page.screenshot({ path: path.join(outDir, "video-viewer.png") });

    // More like this: the moment the video is at, the video itself left out.
    const at = await page.$eval(video, (v) => v.currentTime);
    await page.click("[data-testid=viewer-similar]");
    check(await until("the video to stop", () => page.$eval(video, (v) => v.paused && !v.hasAttribute("src"))),
          "closing the viewer stops the video");
    await until("similar-moment results", async () => (await results.count()) === total + 1);
    const similar = await (await fetch(`${base}/api/images/${mp4Card.id}/similar?t=${at}&k=60`)).json();
    check(JSON.stringify(similar.results.map((r) => r.id)) === JSON.stringify(await firstIds()),
          `more like this from a video searches by its current moment (${at} s), as /similar?t= does`);
    check(!(await firstIds()).includes(mp4Card.id), "more like this leaves the video itself out");
    check(new URL(page.url()).searchParams.get("similar") === `${mp4Card.id}@${Math.round(at * 1000) / 1000}`,
          `the moment is in the URL (${new URL(page.url()).search})`);
    await page.goto(page.url());
    await until("the reloaded moment's results", async () => (await results.count()) === total + 1);
    check(JSON.stringify(similar.results.map((r) => r.id)) === JSON.stringify(await firstIds()) &&
          (await page.locator("[data-testid=term] img").getAttribute("src")).includes(`t=${Math.round(at * 1000) / 1000}`),
          "a reloaded moment search shows the same, with the moment's frame as its term");

    // The Matroska file: the frame of its moment, and the moments switch frames.
    await page.goto(`${base}/?q=a+video`);
    await until("the results with the videos", async () => (await results.count()) === total + 2);
    await page.click(`[data-testid=result][data-id="${mkvCard.id}"]`);
    await page.waitForSelector("[data-testid=viewer][open]");
    await until("the MKV's details", async () => /MKV/.test(await page.textContent("#viewer-meta")));
    const frame = await until("the MKV's frame", () => page.$eval("[data-testid=viewer-image]",
      (i) => !i.hidden && i.complete && i.naturalWidth > 0 && i.src));
    check(await page.$eval(video, (v) => v.hidden) && new URL(frame).searchParams.get("t") === String(mkvCard.time),
          `a video browsers cannot all play shows the frame of its moment (${frame})`);
    const mkvMoments = await page.$$eval("[data-testid=moment]", (bs) => bs.map((b) => Number(b.dataset.time)));
    const otherFrame = mkvMoments.find((t) => t !== mkvCard.time);
    if (otherFrame !== undefined) {
      await page.click(`[data-testid=moment][data-time="${otherFrame}"]`);
      const switched = await until("the other frame", () => page.$eval("[data-testid=viewer-image]",
        (i, t) => i.complete && i.naturalWidth > 0 && new URL(i.src).searchParams.get("t") === String(t) && i.src, otherFrame));
      check(Boolean(switched), `a moment's button shows that frame (${switched})`);
    } else {
      check(false, `the MKV has a second moment (${mkvMoments})`);
    }
    await page.screenshot({ path: path.join(outDir, "video-frame.png") });
    await page.keyboard.press("Escape");
  }

  // Text in images: two signs added live are read after they are embedded; the words find them
  // (fused with the model, which cannot read), the card names the words and the viewer marks them.
  const signsSrc = path.join(work, "signs-src");
  execFileSync(makePhotos, ["--out", signsSrc, "--n", "2", "--seed", "9", "--max-side", "1024",
                            "--words", "ESPRESSO BAR", "--words", "GATE 12 CLOSED"]);
  const signsDir = path.join(pics, "signs");
  fs.mkdirSync(signsDir);
  for (const f of fs.readdirSync(signsSrc)) fs.copyFileSync(path.join(signsSrc, f), path.join(signsDir, f));
  const espresso = path.join(signsDir, "IMG_00000.jpg"), gate = path.join(signsDir, "IMG_00001.jpg");
  // Both read (the readers may be reading the videos' frames first).
  check(await until("the signs' text read", async () => {
    const r = await (await fetch(`${base}/api/search?contains=espresso`)).json();
    const g = await (await fetch(`${base}/api/search?contains=gate%20closed`)).json();
    return r.results.length === 1 && r.results[0].path === espresso && g.results.length === 1 &&
      g.results[0].path === gate;
  }, 180000), "a photo added live is found by the words it shows once they are read");
  await page.goto(`${base}/?q=espresso+bar`);
  const topCard = await until("the sign first", () => page.$eval("[data-testid=result]", (c) =>
    c.querySelector("[data-testid=words]") && { title: c.title, words: c.querySelector("[data-testid=words]").textContent }));
  check(topCard.title === espresso && /ESPRESSO/.test(topCard.words),
        `a plain query finds the photo showing its words first, the words on its card (${JSON.stringify(topCard)})`);
  await page.click("[data-testid=result]");
  await page.waitForSelector("[data-testid=viewer][open]");
  const marked = await until("the words in the viewer", () => page.$eval("[data-testid=viewer-text]", (p) =>
    !p.hidden && [...p.querySelectorAll("mark")].map((m) => m.textContent)));
  check(marked.includes("ESPRESSO"), `the viewer shows the text with the matched words marked (${marked})`);
  await page.screenshot({ path: path.join(outDir, "text-viewer.png") });
  await page.keyboard.press("Escape");
  await page.goto(base + "/");
  await page.click("[data-testid=add-contains]");
  await page.fill("[data-testid=contains-term] input", "gate closed");
  await until("the contains results", async () => (await results.count()) === 1);
  check(await page.$eval("[data-testid=result]", (c) => c.title) === gate, "a 'shows words' chip finds the photo showing them");
  check(new URL(page.url()).searchParams.get("contains") === "gate closed", "the words shown are in the URL");
  await page.click("[data-testid=status-pill]");
  check(await until("the text count in the status panel", async () =>
    /Text read/.test(await page.textContent("[data-testid=status-panel]"))), "the status panel shows how many images' text is read");
  await page.click("[data-testid=status-pill]");

  // Phone width: nothing wider than the screen.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.goto(base + "/?q=mountains");
  await until("phone results", async () => (await phone.locator("[data-testid=result]").count()) > 0);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  const columns = await phone.$$eval("[data-testid=result]", (cards) => new Set(cards.slice(0, 6).map((c) => c.getBoundingClientRect().left)).size);
  check(columns >= 2 && columns <= 3, `phone grid has 2-3 columns (${columns})`);
  await phone.screenshot({ path: path.join(outDir, "phone.png") });

  check(pageErrors.length === 0, `no JavaScript errors (${pageErrors.join("; ")})`);
} catch (e) {
  failed++;
  failures.push(e.message);
  console.log(`FAIL  ${e.message}`);
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`screenshots in ${outDir}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

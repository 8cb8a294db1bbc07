"""One request, one answer: the same searches through the command line (`search --json`), the HTTP
API (GET and POST) and the Python client give the same ranking, the same scores and the same errors.
"""
import base64
import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
sys.path.insert(0, HERE)

import imgsearch_client as isc  # noqa: E402
from server_fixture import running_server  # noqa: E402

N_PHOTOS = 14
DAY = 86400
T0 = 1577836800  # 2020-01-01T00:00:00Z


def prepare(photos):
    """Half the photos into a subfolder, every photo a different month, one unreadable file."""
    names = sorted(os.listdir(photos))
    os.makedirs(os.path.join(photos, "sub"))
    for i, name in enumerate(names):
        path = os.path.join(photos, name)
        if i % 2 == 1:
            new = os.path.join(photos, "sub", name)
            os.rename(path, new)
            path = new
        os.utime(path, (T0 + i * 30 * DAY, T0 + i * 30 * DAY))
    with open(os.path.join(photos, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")


class Request:
    """A search as a user states it; each front end's spelling is derived from it."""

    def __init__(self, name, text=(), image=None, similar=None, **options):
        self.name = name
        self.text = list(text)  # (words, weight)
        self.image = image
        self.similar = similar
        self.options = options  # k, offset, min_score, under, after, before, formats, exact

    def cli_args(self):
        args = []
        for i, (words, weight) in enumerate(self.text):
            if i > 0:
                args.append("+" if weight > 0 else "-")
            elif weight < 0:
                raise ValueError("the command line cannot start with a negative term")
            args.append(words if abs(weight) == 1 else f"{abs(weight)}:{words}")
        if self.image:
            args += ["--image", self.image]
        if self.similar is not None:
            args += ["--similar", str(self.similar)]
        for key, value in self.options.items():
            if key == "formats":
                for f in value:
                    args += ["--format", f]
            elif key == "exact":
                if value:
                    args.append("--exact")
            elif key == "k":
                args += ["-k", str(value)]
            else:
                args += ["--" + key.replace("_", "-"), str(value)]
        return args

    def query_string(self):
        """None when GET cannot say it (weights, images)."""
        if self.image or any(w != 1 for _, w in self.text) or len(self.text) > 1:
            return None
        params = [("q", t) for t, _ in self.text]
        if self.similar is not None:
            params.append(("similar", str(self.similar)))
        for key, value in self.options.items():
            if key == "formats":
                params.append(("format", ",".join(value)))
            elif key == "exact":
                params.append(("exact", "true" if value else "false"))
            else:
                params.append((key, str(value)))
        return urllib.parse.urlencode(params)

    def json_body(self):
        terms = [{"text": t, "weight": w} for t, w in self.text]
        if self.image:
            with open(self.image, "rb") as f:
                terms.append({"image": base64.b64encode(f.read()).decode()})
        if self.similar is not None:
            terms.append({"id": self.similar})
        return {"terms": terms, **self.options}

    def client_call(self, client):
        kwargs = dict(self.options)
        if self.text:
            kwargs["text"] = [(t, w) for t, w in self.text]
        if self.image:
            kwargs["image"] = self.image
        if self.similar is not None:
            kwargs["similar"] = self.similar
        return client.search(**kwargs)


class FrontEndsAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._server = running_server(n_photos=N_PHOTOS, prepare=prepare, n_failed=1)
        cls.url, cls.photos = cls._server.__enter__()
        cls.db = os.path.join(os.path.dirname(cls.photos), "db")
        cls.client = isc.Client(cls.url)

    @classmethod
    def tearDownClass(cls):
        cls._server.__exit__(None, None, None)

    # ---- each front end: a list of (id, score), or ("error", message) ----

    def via_cli(self, r):
        proc = subprocess.run([os.environ["IMGSEARCH_BIN"], "search", "--db", self.db, "--model",
                               os.environ["IMGSEARCH_TEST_MODEL"], "--json", *r.cli_args()],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return ("error", proc.stderr.strip())
        return [(h["id"], h["score"]) for h in map(json.loads, proc.stdout.splitlines())]

    def _http(self, req):
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return [(h["id"], h["score"]) for h in json.load(resp)["results"]]
        except urllib.error.HTTPError as e:
            return ("error", json.load(e)["error"])

    def via_get(self, r):
        qs = r.query_string()
        return None if qs is None else self._http(self.url + "/api/search?" + qs)

    def via_post(self, r):
        return self._http(urllib.request.Request(self.url + "/api/search", data=json.dumps(r.json_body()).encode(),
                                                 headers={"Content-Type": "application/json"}))

    def via_client(self, r):
        try:
            return [(h.id, h.score) for h in r.client_call(self.client)]
        except isc.ImgsearchError as e:
            return ("error", str(e))

    def id_of(self, rel):
        for h in self.client.search(text="x", k=50, exact=True):
            if h.path == os.path.join(self.photos, rel):
                return h.id
        raise AssertionError(f"{rel} is not indexed")

    def failed_id(self):
        for i in range(1, N_PHOTOS + 10):
            try:
                if self.client.info(i)["status"] == "failed":
                    return i
            except isc.NotFoundError:
                continue
        raise AssertionError("the unreadable file is not in the collection")

    def assert_same(self, r):
        answers = {"cli": self.via_cli(r), "get": self.via_get(r), "post": self.via_post(r),
                   "client": self.via_client(r)}
        answers = {k: v for k, v in answers.items() if v is not None}
        ref = answers["post"]
        for name, got in answers.items():
            with self.subTest(request=r.name, front_end=name):
                if isinstance(ref, tuple):
                    self.assertIsInstance(got, tuple, f"{name} answered {got} where POST refused: {ref[1]}")
                    self.assertIn(ref[1], got[1], f"{name}'s message differs")
                else:
                    self.assertNotIsInstance(got, tuple, f"{name} refused ({got}) where POST answered")
                    self.assertEqual([i for i, _ in got], [i for i, _ in ref], f"{name}'s ranking differs")
                    for (_, a), (_, b) in zip(got, ref):
                        self.assertAlmostEqual(a, b, delta=1e-5)
        return ref

    # ---- the requests ----

    def test_rankings_agree(self):
        photo = os.path.join(self.photos, sorted(f for f in os.listdir(self.photos) if f.endswith(".jpg")
                                                 and f != "broken.jpg")[0])
        item = self.id_of(os.path.relpath(photo, self.photos))
        first = self.assert_same(Request("text", text=[("a red car in the snow", 1)], k=5))
        self.assertEqual(len(first), 5)
        median = sorted(s for _, s in self.assert_same(Request("all", text=[("a dog", 1)], k=N_PHOTOS)))[N_PHOTOS // 2]
        cases = [
            Request("weighted terms", text=[("beach", 1), ("people", -0.5)], k=4, offset=2),
            Request("image", image=photo, k=3),
            Request("more like this", similar=item, k=5),
            Request("more like this, second page", similar=item, k=3, offset=2),
            Request("text and item", text=[("a dog", 1)], similar=item, k=4),
            Request("folder", text=[("a dog", 1)], k=20, under=os.path.join(self.photos, "sub")),
            Request("ISO date", text=[("a dog", 1)], k=20, after="2020-06-01"),
            Request("ISO date-time", text=[("a dog", 1)], k=20, before="2020-09-15T12:00:00"),
            Request("Unix seconds", text=[("a dog", 1)], k=20, after=str(T0 + 90 * DAY), before=str(T0 + 300 * DAY)),
            Request("format alias jpg", text=[("a dog", 1)], k=20, formats=["jpg"]),
            Request("format png", text=[("a dog", 1)], k=20, formats=["png"]),
            Request("format alias TIF", text=[("a dog", 1)], k=20, formats=["TIF", "jpeg"]),
            Request("min score", text=[("a dog", 1)], k=20, min_score=round(median, 4)),
            Request("exact", text=[("a dog", 1)], k=6, exact=True),
        ]
        sizes = {r.name: len(self.assert_same(r)) for r in cases}
        self.assertEqual(sizes["image"], 3)
        self.assertEqual(sizes["folder"], N_PHOTOS // 2)
        self.assertEqual(sizes["format png"], 0)
        self.assertEqual(sizes["format alias jpg"], N_PHOTOS)
        self.assertEqual(sizes["format alias TIF"], N_PHOTOS)
        self.assertGreater(sizes["Unix seconds"], 0)
        self.assertLess(sizes["Unix seconds"], N_PHOTOS)
        self.assertTrue(0 < sizes["min score"] < N_PHOTOS)
        # "More like this" leaves the item out everywhere, and its pages continue one ranking.
        like = self.via_cli(Request("", similar=item, k=5))
        self.assertNotIn(item, [i for i, _ in like])
        page2 = self.via_cli(Request("", similar=item, k=3, offset=2))
        self.assertEqual([i for i, _ in like][2:5], [i for i, _ in page2])

    def test_errors_agree(self):
        cases = [
            (Request("k zero", text=[("x", 1)], k=0), "k must be between 1 and 1000"),
            (Request("k text", text=[("x", 1)], k="abc"), "k must be an integer"),
            (Request("k + offset", text=[("x", 1)], k=600, offset=600), "k + offset"),
            (Request("min score", text=[("x", 1)], min_score=2), "min_score must be between -1 and 1"),
            (Request("date", text=[("x", 1)], after="yesterday"), "after must be a date"),
            (Request("no such day", text=[("x", 1)], after="2023-02-30"), "is not a valid date"),
            (Request("order", text=[("x", 1)], after="2024-01-02", before="2024-01-01"), "earlier"),
            (Request("format", text=[("x", 1)], formats=["psd"]), "unknown format"),
            (Request("no such item", similar=987654), "no image with id 987654"),
            (Request("failed item", similar=self.failed_id()), "could not be read when indexed"),
            (Request("cancel out", text=[("x", 1), ("x", -1)]), "cancel out"),
        ]
        for r, message in cases:
            ref = self.assert_same(r)
            with self.subTest(request=r.name):
                self.assertIsInstance(ref, tuple)
                self.assertIn(message, ref[1])


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The Python client against a real server: results equal the HTTP API's, errors are typed."""
import base64
import datetime
import json
import os
import re
import socket
import sys
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
sys.path.insert(0, HERE)

import imgsearch_client as isc  # noqa: E402
from server_fixture import running_server  # noqa: E402


def raw_search(url, body):
    req = urllib.request.Request(url + "/api/search", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["results"]


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._server = running_server(n_photos=16, extra_args=["--token", "t0ken"])
        cls.url, cls.photos = cls._server.__enter__()
        cls.client = isc.Client(cls.url, token="t0ken")

    @classmethod
    def tearDownClass(cls):
        cls._server.__exit__(None, None, None)

    def test_text_search_matches_the_api(self):
        hits = self.client.search(text="a red car in the snow", k=5)
        self.assertEqual(len(hits), 5)
        self.assertIsInstance(hits[0], isc.SearchResult)
        raw = raw_search(self.url, {"q": "a red car in the snow", "k": 5})
        self.assertEqual([h.id for h in hits], [r["id"] for r in raw])
        self.assertAlmostEqual(hits[0].score, raw[0]["score"], places=6)
        self.assertTrue(hits[0].path.startswith(self.photos + "/"))
        self.assertEqual(hits[0].name, os.path.basename(hits[0].path))
        self.assertEqual(hits[0].thumbnail_url, f"/api/images/{hits[0].id}/thumbnail")

    def test_weighted_terms_and_pagination(self):
        hits = self.client.search(text=["beach", ("people", -1.0)], k=4, offset=2)
        raw = raw_search(self.url, {"terms": [{"text": "beach"}, {"text": "people", "weight": -1}], "k": 4, "offset": 2})
        self.assertEqual([h.id for h in hits], [r["id"] for r in raw])

    def test_image_by_path_bytes_and_similar(self):
        path = os.path.join(self.photos, sorted(os.listdir(self.photos))[3])
        by_path = self.client.search(image=path, k=3)
        self.assertEqual(by_path[0].path, path)
        self.assertGreater(by_path[0].score, 0.9999)
        with open(path, "rb") as f:
            by_bytes = self.client.search(image=f.read(), k=3)
        self.assertEqual([h.id for h in by_bytes], [h.id for h in by_path])
        similar = self.client.similar(by_path[0].id, k=5)
        self.assertEqual(len(similar), 5)
        self.assertNotIn(by_path[0].id, [h.id for h in similar])
        # A text with the image pushed away: the same request as the raw API's.
        mixed = self.client.search(text="a dog", image=(path, -1.0), k=16)
        with open(path, "rb") as f:
            b64 = base64.b64encode(f.read()).decode()
        raw = raw_search(self.url, {"terms": [{"text": "a dog"}, {"image": b64, "weight": -1}], "k": 16})
        self.assertEqual([h.id for h in mixed], [r["id"] for r in raw])
        self.assertNotEqual(mixed[0].path, path)

    def test_filters(self):
        self.assertEqual(len(self.client.search(text="dog", k=50, formats=["png"])), 0)
        self.assertEqual(len(self.client.search(text="dog", k=50, under=self.photos)), 16)
        self.assertEqual(len(self.client.search(text="dog", k=50, after=datetime.date(2100, 1, 1))), 0)
        self.assertEqual(len(self.client.search(text="dog", k=50, before="2100-01-01")), 16)

    def test_images_thumbnails_info_status_rescan(self):
        hit = self.client.search(text="anything", k=1)[0]
        with open(hit.path, "rb") as f:
            self.assertEqual(self.client.image(hit.id), f.read())
        thumb = self.client.thumbnail(hit.id, size=128)
        self.assertEqual(thumb[:3], b"\xff\xd8\xff")
        self.assertEqual(self.client.info(hit.id)["path"], hit.path)
        status = self.client.status()
        self.assertEqual(status["collection"]["indexed"], 16)
        self.assertEqual(status["roots"], [self.photos])
        self.assertTrue(self.client.healthy())
        self.assertEqual(self.client.rescan(), [self.photos])
        self.assertEqual(self.client.rescan(self.photos), [self.photos])

    def test_one_version(self):
        # Defined once, by CMakeLists.txt's project(); the server reports it and the client carries it.
        with open(os.path.join(HERE, "..", "..", "CMakeLists.txt")) as f:
            declared = re.search(r"project\(imgsearch VERSION ([0-9.]+)", f.read()).group(1)
        self.assertEqual(self.client.status()["server"]["version"], declared)
        self.assertEqual(isc.__version__, declared)
        with urllib.request.urlopen(self.url + "/api") as r:
            self.assertEqual(json.load(r)["version"], declared)

    def test_errors_are_typed_and_carry_the_servers_message(self):
        with self.assertRaises(isc.BadRequestError) as e:
            self.client.search(text="dog", k=0)
        self.assertIn("k must be between 1 and", str(e.exception))
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(isc.NotFoundError):
            self.client.search(similar=999999)
        with self.assertRaises(isc.NotFoundError):
            self.client.thumbnail(999999)
        with self.assertRaises(isc.BadRequestError) as e:
            self.client.search(image=b"definitely not an image")
        self.assertIn("not an image", e.exception.message)
        with self.assertRaises(isc.AuthenticationError):
            isc.Client(self.url, token="wrong").rescan()
        with self.assertRaises(isc.BadRequestError):
            self.client.rescan("/not/a/watched/folder")
        with self.assertRaises(TypeError):
            self.client.search(text="dog", colour="red")
        with self.assertRaises(ValueError):
            self.client.search()
        # A local problem is typed too: both an ImgsearchError and the OSError it is.
        with self.assertRaises(FileNotFoundError) as missing:
            self.client.search(image="/no/such/file.jpg")
        self.assertIsInstance(missing.exception, isc.QueryImageError)
        self.assertIsInstance(missing.exception, isc.ImgsearchError)
        self.assertIn("/no/such/file.jpg", missing.exception.message)
        self.assertIsNone(missing.exception.status)
        with self.assertRaises(isc.QueryImageError):
            self.client.search(image=HERE)  # a folder
        with self.assertRaises(ValueError):
            isc.Client("localhost:8080")
        # Nothing listens on a port we just had and closed.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(isc.ConnectionError) as e:
            isc.Client(f"http://127.0.0.1:{port}", timeout=5).status()
        self.assertIn("cannot reach", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)

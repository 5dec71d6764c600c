"""The storage seam: one contract for local files and S3, and servers that keep their
images in S3 (moto's S3 server over HTTP on loopback, with boto3 as in production)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from imagegate.errors import ImageNotFound, ServiceUnavailable
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.jobs.models import Job, Status
from imagegate.settings import Settings
from imagegate.storage import MAX_PRESIGNED_S, Storage, open_presigner, open_storage
from imagegate.storage.blobs import BlobWriter
from imagegate.storage.encoding import encode
from imagegate.storage.keys import blob_key, image_key, preview_key, quarantine_key
from imagegate.storage.quarantine import Quarantine
from imagegate.storage.signing import UrlSigner
from tests.conftest import SettingsFactory
from tests.helpers import spec, wait_for_job
from tests.processes import free_port
from tests.test_realtime import read_sse

PNG = b"\x89PNG\r\n\x1a\n"
KEY = image_key("0123456789abcdef", "an-image")
OUTSIDE = ["../escape.png", "/tmp/escape.png", "ab/../../escape.png"]


# -- an S3 on loopback ----------------------------------------------------------------------


def _expiring(app: Any) -> Any:
    """moto serves a presigned URL at any time; S3 refuses one past X-Amz-Date plus
    X-Amz-Expires (7 days at most), and so does this server."""

    def checked(environ: dict[str, Any], start_response: Any) -> Any:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            lifetime = int(query["X-Amz-Expires"][0])
            ends = signed.replace(tzinfo=UTC) + timedelta(seconds=lifetime)
            if lifetime > MAX_PRESIGNED_S or datetime.now(UTC) > ends:
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<Error><Code>AccessDenied</Code><Message>Request has expired"]
        return app(environ, start_response)

    return checked


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port (what ``moto.server.ThreadedMotoServer``
    runs, behind :func:`_expiring`)."""
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("moto[server] must be installed under CI: the S3 tests are required")
        pytest.skip("the S3 tests need moto[server] and boto3 (pip install -e '.[all]')")
    app = _expiring(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@dataclass
class Bucket:
    name: str
    endpoint: str
    client: Any

    def settings(self, **changes: Any) -> dict[str, Any]:
        values = {
            "storage_url": f"s3://{self.name}/images",
            "s3_endpoint_url": self.endpoint,
            "s3_region": "us-east-1",
            # Always given: boto3's credential chain would look for a metadata service.
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        }
        return values | changes

    def keys(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        return {item["Key"] for item in listed}


@pytest.fixture
def bucket(s3_endpoint: str) -> Bucket:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"imagegate-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, s3_endpoint, client)


# -- the contract, for every storage --------------------------------------------------------


@dataclass
class Backend:
    storage: Storage
    keys: Callable[[], set[str]]  # everything stored, relative to the data dir or bucket


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        storage = open_storage(Settings(data_dir=tmp_path))
        return Backend(storage, lambda: _files_under(tmp_path))
    bucket: Bucket = request.getfixturevalue("bucket")
    return Backend(open_storage(Settings(data_dir=tmp_path, **bucket.settings())), bucket.keys)


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_get_gives_what_was_put_and_a_put_overwrites(backend: Backend) -> None:
    backend.storage.put(KEY, PNG + b"first")
    assert backend.storage.get(KEY) == PNG + b"first"
    backend.storage.put(KEY, PNG + b"second")
    assert backend.storage.get(KEY) == PNG + b"second"


def test_a_missing_key_is_image_not_found(backend: Backend) -> None:
    with pytest.raises(ImageNotFound):
        backend.storage.get(KEY)


def test_delete_removes_and_deleting_again_is_no_error(backend: Backend) -> None:
    backend.storage.put(KEY, PNG)
    backend.storage.delete(KEY)
    with pytest.raises(ImageNotFound):
        backend.storage.get(KEY)
    backend.storage.delete(KEY)
    assert backend.keys() == set()


def test_check_writable_leaves_nothing_behind(backend: Backend) -> None:
    backend.storage.check_writable()
    assert backend.keys() == set()


def test_keys_stay_under_the_images_root(backend: Backend) -> None:
    backend.storage.put(KEY, PNG)
    assert backend.keys() == {f"images/{KEY}"}
    for key in OUTSIDE:
        with pytest.raises(ImageNotFound):
            backend.storage.put(key, PNG)
        with pytest.raises(ImageNotFound):
            backend.storage.get(key)
    assert backend.keys() == {f"images/{KEY}"}


def test_delete_prefix_removes_one_folder_only(backend: Backend) -> None:
    backend.storage.put("previews/01/0123/1.png", PNG)
    backend.storage.put("previews/01/0123/2.png", PNG)
    backend.storage.put("previews/01/01234/1.png", PNG)  # another job, the same start
    backend.storage.delete_prefix("previews/01/0123/")
    assert backend.keys() == {"images/previews/01/01234/1.png"}
    backend.storage.delete_prefix("previews/01/0123/")  # nothing left: no error


def test_quarantine_withholds_then_releases_into_the_served_area(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> None:
    job = Job(
        "0123456789abcdef",
        "owner",
        spec(steps=2, output_format="webp"),
        Status.GENERATING,
        1,
        datetime.now(UTC),
        moderation={"output": [{"flagged": True}]},
    )
    held = encode(Image.new("RGB", (16, 16), "red"), "webp", 80, {"prompt": "p"}).data
    backend.storage.put(preview_key(job.id, 2), PNG + b"preview")
    quarantine = Quarantine(backend.storage)
    quarantine.keep(job, [held])
    assert backend.keys() == {f"images/{quarantine_key(job.id, 0)}"}  # the preview is gone
    assert quarantine.get(job, 0) == held
    engine = create_db_engine(Settings(data_dir=tmp_path_factory.mktemp("db")))
    upgrade(engine)
    [released] = quarantine.release(job, BlobWriter(backend.storage, engine))
    quarantine.settle(job, [released], recorded=True)
    engine.dispose()
    assert released.storage_key == f"blobs/{released.sha256[:2]}/{released.sha256}.webp"
    assert released.content_type == "image/webp" and released.placeholder is not None
    assert backend.keys() == {f"images/{released.storage_key}"}
    assert backend.storage.get(released.storage_key) == held


# -- S3 only: presigned URLs, and an S3 that does not answer --------------------------------


def test_presigned_urls_give_the_bytes_until_they_expire(bucket: Bucket, tmp_path: Path) -> None:
    storage = open_storage(Settings(data_dir=tmp_path, **bucket.settings()))
    storage.put(KEY, PNG + b"direct")
    presigned_url = storage.presigned_url  # type: ignore[attr-defined]
    fetched = httpx.get(presigned_url(KEY, 60))
    assert fetched.status_code == 200 and fetched.content == PNG + b"direct"
    assert fetched.headers["content-type"] == "image/png"
    brief = presigned_url(KEY, 1)
    time.sleep(2.2)  # X-Amz-Date counts whole seconds
    assert httpx.get(brief).status_code == 403


def test_presigned_links_live_the_signed_url_ttl_but_7_days_at_most(
    bucket: Bucket, tmp_path: Path
) -> None:
    for ttl_s, lifetime in [(600, "600"), (30 * 24 * 3600, "604800")]:
        settings = Settings(
            data_dir=tmp_path, signed_url_ttl_s=ttl_s, **bucket.settings(s3_presigned_urls=True)
        )
        presign = open_presigner(settings, open_storage(settings))
        assert presign is not None
        url = urlsplit(presign(KEY))
        assert url.path == f"/{bucket.name}/images/{KEY}"
        assert parse_qs(url.query)["X-Amz-Expires"] == [lifetime]
    plain = Settings(data_dir=tmp_path, **bucket.settings())
    assert open_presigner(plain, open_storage(plain)) is None
    local = Settings(data_dir=tmp_path, s3_presigned_urls=True)
    with pytest.raises(ValueError, match="IMAGEGATE_STORAGE_URL"):
        open_presigner(local, open_storage(local))


@pytest.mark.parametrize("away", ["bucket", "endpoint"])
def test_no_bucket_or_no_endpoint_is_service_unavailable(
    away: str, bucket: Bucket, tmp_path: Path
) -> None:
    changes = {
        "bucket": {"storage_url": "s3://no-such-bucket/images"},
        "endpoint": {"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"},
    }[away]
    storage = open_storage(Settings(data_dir=tmp_path, **bucket.settings(**changes)))
    for call in (
        partial(storage.put, KEY, PNG),
        partial(storage.get, KEY),
        partial(storage.delete, KEY),
        storage.check_writable,
    ):
        with pytest.raises(ServiceUnavailable) as caught:
            call()
        assert caught.value.status == 503 and caught.value.retry_after_s


# -- servers that keep their images in S3 ---------------------------------------------------

Server = Callable[..., httpx.Client]


def test_a_server_on_s3_serves_its_images_at_its_signed_urls(
    server_factory: Server, make_settings: SettingsFactory, bucket: Bucket
) -> None:
    settings = make_settings(**bucket.settings())
    api = server_factory(settings)
    done = wait_for_job(api, api.post("/v1/jobs", json={"prompt": "a harbour"}).json()["id"])
    [image] = done["images"]
    own = f"{str(api.base_url).rstrip('/')}/v1/images/{image['id']}?"
    assert image["url"].startswith(own)
    fetched = api.get(image["url"])
    assert fetched.status_code == 200 and fetched.content.startswith(PNG)
    digest = hashlib.sha256(fetched.content).hexdigest()
    assert bucket.keys() == {f"images/{blob_key(digest, 'image/png')}"}  # content addressed
    assert not list(settings.data_dir.rglob("*.png"))  # nothing on the local disk
    assert api.get("/ready").json()["checks"]["storage"] == "ok"


def test_presigned_mode_links_images_and_previews_straight_to_s3(
    server_factory: Server, make_settings: SettingsFactory, bucket: Bucket
) -> None:
    s3 = bucket.settings(s3_presigned_urls=True)
    settings = make_settings(**s3, sketch_delay_ms=300, preview_every=10)
    api = server_factory(settings)
    job = api.post("/v1/jobs", json={"prompt": "a lighthouse"}).json()
    events = [e for e in read_sse(api, f"/v1/jobs/{job['id']}/events") if "event" in e]
    previews = [e["data"]["preview_url"] for e in events if e["event"] == "progress"]
    streamed = events[-1]["data"]["images"][0]["url"]
    [image] = api.get(f"/v1/jobs/{job['id']}").json()["images"]
    for url in (image["url"], streamed, next(p for p in previews if p)):
        assert url.startswith(f"{bucket.endpoint}/{bucket.name}/images/")
        fetched = httpx.get(url)
        assert fetched.status_code == 200 and fetched.content.startswith(PNG)
    assert httpx.get(image["url"]).content == httpx.get(streamed).content
    # Links the API signed itself (before presigning was turned on) keep working.
    signer = UrlSigner(settings.signing_key, 3600)
    own = api.get(f"/v1/images/{image['id']}?{signer.query(image['id'])}")
    assert own.status_code == 200 and own.content == httpx.get(image["url"]).content


def test_an_unreachable_s3_is_unready_and_a_503_never_a_500(
    server_factory: Server, make_settings: SettingsFactory, bucket: Bucket
) -> None:
    settings = make_settings(**bucket.settings())
    first = server_factory(settings)
    done = wait_for_job(first, first.post("/v1/jobs", json={"prompt": "a pier"}).json()["id"])
    away = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    api = server_factory(away, workers=0)  # same database and key, S3 out of reach
    ready = api.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["storage"] == "unavailable"
    image = api.get(done["images"][0]["url"].removeprefix(str(first.base_url)))
    assert image.status_code == 503 and image.headers["retry-after"]
    assert image.json()["code"] == "storage_unavailable"

"""The ``vec serve`` web application: routes, the store it reads, the caches that keep pages fast.

Framework: Starlette (ASGI, served by uvicorn) with Jinja2 templates. Why: it is small (one package, no
ORM, no admin, no settings module), maintained by the encode team that also makes uvicorn and httpx, has
plain functions as routes, a test client for in-process tests, and nothing here needs more. The pages are
server-rendered HTML; the only JavaScript is a few lines in ``static/vec.js`` and plotly.js for the map,
served from the plotly Python package vec already depends on (no JavaScript build step, no network).

Safety:

- the default bind is 127.0.0.1, and requests must name this server as their ``Host`` (a DNS-rebinding
  page cannot reach it by another name);
- the store is opened read-only; the one write is a label, through :func:`query.analysts.add_label` on a
  store opened for writing for that call only — exactly what ``vec labels add`` does — and a ``POST`` from
  another site's page (its ``Origin`` or ``Sec-Fetch-Site``) is refused;
- nothing a browser sends reaches the catalog as SQL: filters, sorts and the look-alike filter box become
  fixed SQL with ``?`` parameters (:mod:`vecstore.cli.web.data`, :mod:`vecstore.cli.web.filters`).

Besides the label, the server writes only derived files under ``<store>/web-cache/``: each CCD's
thumbnails, drawn once (:mod:`vecstore.cli.web.thumbs`), and the 2-D map of the latest state.

Speed on a store of 100 k CCDs: the loaded model, the latest run, the counts, the map and the review queue
are cached in memory, keyed by the catalog file's modification time and the current model version (so an
ingest, a ``vec train`` or a label, from this server or another process, refreshes them), and exposure
classifications are kept for the last few hundred exposures. A catalog connection costs ~20 ms, so each
page runs few queries; ``bench/serve_bench.py`` measures them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from query.analysts import VERDICTS, add_label
from query.reports.thumbnails import LOADED_IMAGES_SCRIPT
from query.review import review_queue
from vecstore import catalog
from vecstore.cli.web import data
from vecstore.cli.web.thumbs import CACHE_DIR, SIZES, ThumbnailCache
from vecstore.config import Config
from vecstore.errors import (
    BadInputError,
    NotAStoreError,
    NotFoundError,
    NotTrainedError,
    ReadOnlyError,
    StoreLockedError,
    VecError,
)
from vecstore.models import Model, current_version
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES

_STATUS = (
    (NotFoundError, 404),
    (NotAStoreError, 404),
    (BadInputError, 400),
    (NotTrainedError, 409),
    (StoreLockedError, 503),
    (ReadOnlyError, 403),
)
_CCDNAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
EXPOSURE_CACHE = 256
DEFAULT_K = 12
DEFAULT_REVIEW = 20


class ReadWriteLock:
    """Many readers or one writer. DuckDB refuses, in one process, a read-write connection to a file that
    has a read-only one open (and the reverse), so the label write waits for the reads in flight."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self):
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self):
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class WebState:
    """The store the server reads, its caches, and the one write (a label)."""

    def __init__(
        self,
        store_path: Path,
        config: Config | None = None,
        *,
        analyst: str = "",
        map_sample: int = 1000,
        map_method: str = "tsne",
        seed: int = 0,
    ):
        self.path = Path(store_path)
        self.config = config or Config()
        self.store = Store.open(self.path, config=self.config)  # read-only: checks it is a store
        self.analyst = analyst
        self.map_sample, self.map_method, self.seed = map_sample, map_method, seed
        self.thumbnails = ThumbnailCache(self.path)
        self.lock = ReadWriteLock()
        self._memo: dict[str, tuple[Any, Any]] = {}
        self._memo_locks: dict[str, threading.Lock] = {}
        self._memo_guard = threading.Lock()
        self._model_lock = threading.Lock()  # one classification or search at a time over a loaded model
        self._exposures: OrderedDict[tuple, Any] = OrderedDict()

    @contextlib.contextmanager
    def reading(self):
        """The read lock, and one read-only catalog connection held for its length: DuckDB shares the open
        database between connections to the same file in one process, so the library's many short
        connections during one page cost well under a millisecond each instead of ~20 ms. Nothing is held
        between requests, so other processes (``vec ingest``, ``vec labels add``) can write."""
        with self.lock.read():
            anchor = catalog.connect(
                self.store.catalog_path, read_only=True, timeout_s=self.config.store.lock_timeout_s
            )
            try:
                yield
            finally:
                anchor.close()

    # ------------------------------------------------------------------ caching
    def fingerprint(self) -> tuple:
        """Changes whenever the catalog is written (by anyone) or the current model changes."""
        marks = []
        for name in ("catalog.duckdb", "catalog.duckdb.wal", "models/CURRENT"):
            try:
                st = (self.path / name).stat()
                marks.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                marks.append(None)
        return tuple(marks)

    def memo(self, name: str, key: Any, compute: Callable[[], Any]) -> Any:
        """The value of ``compute()`` kept under ``name`` while ``key`` stays the same (computed once even
        when several requests ask at the same time)."""
        with self._memo_guard:
            lock = self._memo_locks.setdefault(name, threading.Lock())
        with lock:
            held = self._memo.get(name)
            if held is not None and held[0] == key:
                return held[1]
            value = compute()
            self._memo[name] = (key, value)
            return value

    def state(self) -> dict:
        """What most pages need about the store now: counts, model version, latest run (cached)."""

        def compute() -> dict:
            row = self.store.query(
                "SELECT (SELECT count(*) FROM ccds) AS n_ccds, (SELECT count(*) FROM labels) AS n_labels, "
                "(SELECT count(*) FROM information_schema.tables WHERE table_name = 'analyst_labels') AS a"
            ).to_pylist()[0]
            return {
                "n_ccds": int(row["n_ccds"]),
                "n_labels": int(row["n_labels"]),
                "analysts": bool(row["a"]),
                "version": current_version(self.store),
                "run": data.latest_run(self.store),
            }

        return self.memo("state", self.fingerprint(), compute)

    def model_key(self, state: dict) -> tuple:
        run = state["run"]["run_id"] if state["run"] else None
        return (state["version"], state["n_ccds"], state["n_labels"], run)

    def model(self, state: dict) -> Model | None:
        if state["version"] is None:
            return None
        return self.memo(
            "model", (state["version"], state["n_ccds"]), lambda: Model(self.store, state["version"])
        )

    def exposure_result(self, state: dict, expnum: int, all_ccds: bool):
        """``vec classify EXPNUM`` (``--all-ccds``), kept for the last EXPOSURE_CACHE exposures."""
        model = self.model(state)
        key = (self.model_key(state), expnum, all_ccds)
        with self._model_lock:
            if key in self._exposures:
                self._exposures.move_to_end(key)
                return self._exposures[key]
            data.exposure_ccds(self.store, expnum)  # a 404 before any classification
            result = data.classified(self.store, model, self.config.classify, expnum, all_ccds)
            self._exposures[key] = result
            while len(self._exposures) > EXPOSURE_CACHE:
                self._exposures.popitem(last=False)
        return result

    def similar(self, state: dict, ccd: str, k: int, where: str | None) -> dict:
        model = self.model(state)
        with self._model_lock:
            return data.similar_data(self.store, model, ccd, k, where)

    def review(self, state: dict, n: int) -> dict:
        model = self.model(state)
        if model is None:
            raise NotTrainedError("the review queue needs a trained model: run `vec train` first")

        def compute():
            with self._model_lock:
                return review_queue(
                    self.store, model, self.config.classify, n, analyst=self.analyst or "NAME"
                )

        queue = self.memo(f"review-{n}", self.model_key(state), compute)
        return data.review_data(self.store, queue)

    def embedding_map(self, state: dict) -> dict:
        key = (*self.model_key(state), self.map_sample, self.seed, self.map_method)
        digest = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]
        path = self.path / CACHE_DIR / f"map-{digest}.json"

        def compute() -> dict:
            with contextlib.suppress(OSError, ValueError):
                return json.loads(path.read_text())
            found = data.embedding_map(
                self.store, self.model(state), self.map_sample, self.seed, self.map_method
            )
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(json.dumps(found))
                tmp.replace(path)
            return found

        return self.memo("map", key, compute)

    def warm(self) -> None:
        """Load the model, draw the map and rank the review queue before anyone asks (a thread at start)."""
        try:
            with self.reading():
                state = self.state()
                self.embedding_map(state)
                if state["version"] is not None:
                    self.review(state, DEFAULT_REVIEW)
        except Exception:  # a failure here shows again, with its message, on the page that needs it
            traceback.print_exc()

    # ------------------------------------------------------------------ the one write
    def add_label(self, target: str, category: str, analyst: str, note: str = ""):
        """Exactly ``vec labels add TARGET CATEGORY --analyst NAME --note NOTE``."""
        with self.lock.write(), Store.open(self.path, writable=True, config=self.config) as store:
            return add_label(store, target, category, analyst, note)


# ---------------------------------------------------------------------------------------------- rendering
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vecstore.cli.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.globals["loaded_images_script"] = jinja2.utils.markupsafe.Markup(LOADED_IMAGES_SCRIPT)
    return env


def _fmt(value: Any, spec: str) -> str:
    """A number formatted by ``spec``; None empty; anything else (a list, a word) as text."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "–"
    return str(value)


def _static_files() -> dict[str, tuple[bytes, str]]:
    files = {}
    folder = resources.files("vecstore.cli.web") / "static"
    for item in folder.iterdir():
        if item.is_file() and not item.name.startswith("."):
            kind = "text/css" if item.name.endswith(".css") else "application/javascript"
            files[item.name] = (item.read_bytes(), kind)
    return files


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=str), status_code=status, media_type="application/json")


def _status_of(exc: Exception) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def _check_ccdname(name: str) -> str:
    if not name or len(name) > 8 or not set(name) <= _CCDNAME_CHARS:
        raise NotFoundError(f"{name!r} is not a CCD name (e.g. N4, S31)")
    return name


def _safe_next(text: str | None) -> str:
    """A local path to go back to after a label (never another site)."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text


class _Site:
    """The pages, the JSON API and the label write of ``vec serve``, over one :class:`WebState`."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.env = _templates()
        self.static = _static_files()

    def page(self, request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
        html = self.env.get_template(name).render(
            request_path=request.url.path,
            store_path=str(self.state.path),
            analyst=request.cookies.get("vec_analyst") or self.state.analyst,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": message, "status": status}, status)
        titles = {400: "Bad request", 403: "Refused", 404: "Not found", 409: "Not ready", 503: "Busy"}
        return self.page(
            request,
            "error.html",
            {"status": status, "title": titles.get(status, "Error"), "message": message},
            status,
        )

    async def vec_error(self, request: Request, exc: Exception) -> Response:
        return self.error(request, _status_of(exc), str(exc))

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        message = exc.detail
        if exc.status_code == 404:
            message = (
                f"no page at {request.url.path}: try / (the survey), /review, "
                "or /api/similar?ccd=EXPNUM/CCDNAME"
            )
        return self.error(request, exc.status_code, message)

    def read_locked(self, handler):
        """Run a page under the store's read lock (:meth:`WebState.reading`), with its current state."""

        def run(request: Request):
            with self.state.reading():
                return handler(request, self.state.state())

        return run

    # ------------------------------------------------------------------ page data
    def survey_payload(self, request: Request, st: dict) -> dict:
        return self._survey_data(st, data.SurveyFilter.from_query(request.query_params))

    def _survey_data(self, st: dict, flt: data.SurveyFilter) -> dict:
        counts = self.state.memo(
            "counts",
            self.state.fingerprint(),
            lambda: data.survey_counts(self.state.store, st["run"], st["analysts"]),
        )
        table = data.survey_exposures(self.state.store, st["run"], st["analysts"], flt)
        return {
            "store": {"n_ccds": st["n_ccds"], "n_labels": st["n_labels"], "model": st["version"]},
            "run": st["run"],
            "counts": counts,
            "exposures": table,
            "filter": {**flt.__dict__},
        }

    def exposure_payload(self, request: Request, st: dict) -> dict:
        expnum = int(request.path_params["expnum"])
        all_ccds = request.query_params.get("all_ccds") in ("1", "true", "yes")
        result = self.state.exposure_result(st, expnum, all_ccds)
        return data.exposure_data(
            self.state.store,
            self.state.model(st),
            self.state.config.classify,
            expnum,
            all_ccds=all_ccds,
            run=st["run"],
            result=result,
        )

    def ccd_payload(self, request: Request, st: dict) -> dict:
        expnum = int(request.path_params["expnum"])
        name = _check_ccdname(request.path_params["ccdname"])
        k = data.parse_int(request.query_params.get("k"), "k", DEFAULT_K, 1, data.MAX_K)
        where = request.query_params.get("where") or ""
        row = data.ccd_row(self.state.store, expnum, name)  # 404 first
        result = self.state.exposure_result(st, expnum, True)
        labels = self._ccd_labels(st)
        out = data.ccd_data(self.state.store, expnum, name, result, labels)
        out["model"] = st["version"]
        out["similar"] = self.state.similar(st, f"{expnum}/{row['ccdname']}", k, where)
        return out

    def _ccd_labels(self, st: dict) -> dict[int, str]:
        from query.labels import resolve_ccd_categories

        return self.state.memo(
            "ccd-labels", self.state.fingerprint(), lambda: resolve_ccd_categories(self.state.store)
        )

    # ------------------------------------------------------------------ pages
    def survey_page(self, request: Request, st: dict) -> Response:
        flt = data.SurveyFilter.from_query(request.query_params)
        payload = self._survey_data(st, flt)
        return self.page(
            request,
            "survey.html",
            {
                **payload,
                "flt": flt,
                "verdicts": data.VERDICT_FILTERS,
                "categories": CATEGORIES,
                "sorts": list(data.SORTS),
            },
        )

    def exposure_page(self, request: Request, st: dict) -> Response:
        payload = self.exposure_payload(request, st)
        return self.page(
            request,
            "exposure.html",
            {"e": payload, "verdicts": VERDICTS, "said": request.query_params.get("said", "")},
        )

    def ccd_page(self, request: Request, st: dict) -> Response:
        payload = self.ccd_payload(request, st)
        return self.page(
            request,
            "ccd.html",
            {"c": payload, "verdicts": VERDICTS, "said": request.query_params.get("said", "")},
        )

    def review_page(self, request: Request, st: dict) -> Response:
        n = data.parse_int(request.query_params.get("n"), "n", DEFAULT_REVIEW, 1, 500)
        return self.page(request, "review.html", {"r": self.state.review(st, n), "n": n})

    # ------------------------------------------------------------------ JSON
    def api_survey(self, request: Request, st: dict) -> Response:
        return _json(self.survey_payload(request, st))

    def api_exposure(self, request: Request, st: dict) -> Response:
        return _json(self.exposure_payload(request, st))

    def api_ccd(self, request: Request, st: dict) -> Response:
        return _json(self.ccd_payload(request, st))

    def api_similar(self, request: Request, st: dict) -> Response:
        ccd = request.query_params.get("ccd")
        if not ccd:
            raise BadInputError("give the query CCD: /api/similar?ccd=EXPNUM/CCDNAME&k=N")
        k = data.parse_int(request.query_params.get("k"), "k", DEFAULT_K, 1, data.MAX_K)
        if self.state.model(st) is None:
            raise NotTrainedError("look-alikes need a trained model here: run `vec train` first")
        return _json(self.state.similar(st, ccd, k, request.query_params.get("where")))

    def api_review(self, request: Request, st: dict) -> Response:
        n = data.parse_int(request.query_params.get("n"), "n", DEFAULT_REVIEW, 1, 500)
        return _json(self.state.review(st, n))

    def api_map(self, request: Request, st: dict) -> Response:
        return _json(self.state.embedding_map(st))

    def thumbnail(self, request: Request) -> Response:
        expnum = int(request.path_params["expnum"])
        name = request.path_params["ccdname"].removesuffix(".png")
        _check_ccdname(name)
        size = request.query_params.get("size", "small")
        if size not in SIZES:
            raise BadInputError(f"size {size!r}: expected one of {', '.join(SIZES)}")
        found = self.state.thumbnails.cached(expnum, name, size)
        if found is None:
            with self.state.reading():
                row = data.ccd_row(self.state.store, expnum, name)
            found = self.state.thumbnails.get(expnum, name, size, (row["path"], row["hdu"]))
        cache = "no-store" if found.source == "no-image" else "max-age=86400"
        return Response(
            found.png,
            media_type="image/png",
            headers={"X-Vec-Thumbnail": found.source, "Cache-Control": cache},
        )

    def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            body = self.state.memo("plotly", None, _plotly_js)
            return Response(
                body, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"}
            )
        if name not in self.static:
            raise NotFoundError(f"no static file {name!r}")
        body, kind = self.static[name]
        return Response(body, media_type=kind, headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ the write
    def _same_site(self, request: Request) -> None:
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if site and site not in ("same-origin", "none"):
            raise ReadOnlyError(
                f"labels are recorded only from this server's own pages (Sec-Fetch-Site: {site})"
            )
        if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
            raise ReadOnlyError(f"labels are recorded only from this server's own pages, not from {origin}")

    async def label_form(self, request: Request) -> Response:
        self._same_site(request)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        target, category = form.get("target", ""), form.get("category", "")
        analyst, note = form.get("analyst", "").strip(), form.get("note", "")
        back = _safe_next(form.get("next"))
        if not analyst:
            raise BadInputError("type your name in the analyst box before recording a verdict")
        result = await run_in_threadpool(self.state.add_label, target, category, analyst, note)
        sep = "&" if "?" in back else "?"
        response = RedirectResponse(f"{back}{sep}{urlencode({'said': result.describe()})}", status_code=303)
        response.set_cookie("vec_analyst", result.analyst, max_age=365 * 86400, samesite="strict")
        return response

    async def api_label(self, request: Request) -> Response:
        self._same_site(request)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadInputError(
                'send JSON: {"target": "EXPNUM[/CCDNAME]", "category": "...", "analyst": "..."}'
            ) from None
        if not isinstance(body, dict):
            raise BadInputError("send a JSON object with target, category, analyst (and note)")
        args = [str(body.get(k) or "") for k in ("target", "category", "analyst", "note")]
        result = await run_in_threadpool(self.state.add_label, *args)
        return _json(
            {
                "added": result.describe(),
                "analyst": result.analyst,
                "target": result.target,
                "category": result.category,
                "replaced": result.replaced,
            }
        )

    def routes(self) -> list[Route]:
        return [
            Route("/", self.read_locked(self.survey_page)),
            Route("/exposure/{expnum:int}", self.read_locked(self.exposure_page)),
            Route("/ccd/{expnum:int}/{ccdname:str}", self.read_locked(self.ccd_page)),
            Route("/review", self.read_locked(self.review_page)),
            Route("/label", self.label_form, methods=["POST"]),
            Route("/thumb/{expnum:int}/{ccdname:str}", self.thumbnail),
            Route("/static/{name:str}", self.static_file),
            Route("/api/survey", self.read_locked(self.api_survey)),
            Route("/api/exposure/{expnum:int}", self.read_locked(self.api_exposure)),
            Route("/api/ccd/{expnum:int}/{ccdname:str}", self.read_locked(self.api_ccd)),
            Route("/api/similar", self.read_locked(self.api_similar)),
            Route("/api/review", self.read_locked(self.api_review)),
            Route("/api/map", self.read_locked(self.api_map)),
            Route("/api/labels", self.api_label, methods=["POST"]),
        ]


def create_app(
    store_path: Path,
    config: Config | None = None,
    *,
    host: str = "127.0.0.1",
    analyst: str = "",
    map_sample: int = 1000,
    map_method: str = "tsne",
    warm: bool = True,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The ASGI application over the store at ``store_path`` (opened read-only now: a missing store fails
    here, before a port is bound). ``warm``: a thread loads the model, map and review queue at start."""
    state = WebState(store_path, config, analyst=analyst, map_sample=map_sample, map_method=map_method)
    site = _Site(state)
    if allowed_hosts is None:
        allowed_hosts = (
            ["*"] if host in ("0.0.0.0", "::", "") else sorted({host, "127.0.0.1", "localhost", "[::1]"})
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if warm:
            threading.Thread(target=state.warm, name="vec-serve-warm", daemon=True).start()
        yield

    app = Starlette(
        routes=site.routes(),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)],
        exception_handlers={VecError: site.vec_error, HTTPException: site.http_error},
        lifespan=lifespan,
    )
    app.state.web = state
    return app


def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")

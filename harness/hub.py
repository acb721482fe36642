"""The Hugging Face Hub client: every call with retries and backoff on transient faults, failures as sentences."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

RETRIES = 5
BACKOFF_S = 0.5


class NetworkUnavailable(HarnessError):
    """The Hub could not be reached (offline, refused, timed out) after the retries."""

    def __init__(self, message: str):
        super().__init__(
            f"{message}. Check the connection (or HF_ENDPOINT), or run with the artifacts already in the store "
            "(HF_HUB_OFFLINE=1), or use --mode regenerate."
        )


def transient(exc: Exception) -> bool:
    """A fault worth retrying: a 5xx or 429 answer, or a connection cut in the middle of a body."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    # A connection cut mid-body: huggingface_hub does not retry it, so we do (the download resumes).
    # Timeouts and refused connections are not here: huggingface_hub already retried them with backoff.
    return type(exc).__name__ in ("ReadError", "RemoteProtocolError", "WriteError", "ChunkedEncodingError",
                                  "IncompleteRead", "ProtocolError") or isinstance(exc, ConnectionResetError)


def unreachable(exc: Exception) -> bool:
    """The Hub did not answer at all (timeouts, refused connections)."""
    return isinstance(exc, (TimeoutError, ConnectionError)) or type(exc).__name__ in (
        "ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "PoolTimeout")


_REFUSED = {401: "; set HF_TOKEN to a token with access", 403: "; the token has no access to this repository",
            404: "; the repository or file is not there"}


def call(what: str, fn: Callable, *args, **kwargs) -> Any:
    """Call the Hub with retries and exponential backoff on transient faults; clear sentences otherwise."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except LocalEntryNotFoundError:
            # huggingface_hub's word for "could not connect", after its own retries with backoff:
            # retrying again here would only multiply the wait.
            raise NetworkUnavailable(f"{what}: the Hub cannot be reached") from None
        except GatedRepoError:
            raise HarnessError(
                f"{what}: the repository is gated; accept its terms on the Hub and set HF_TOKEN.") from None
        except RepositoryNotFoundError:
            raise HarnessError(f"{what}: the repository does not exist (or is private: set HF_TOKEN).") from None
        except RevisionNotFoundError:
            raise HarnessError(f"{what}: the locked revision is not on the Hub any more.") from None
        except EntryNotFoundError:
            raise HarnessError(f"{what}: the file is not in the repository at that revision.") from None
        except OfflineModeIsEnabled:
            raise NetworkUnavailable(f"{what}: HF_HUB_OFFLINE is set and the artifact is not in the store") from None
        except Exception as exc:  # sorted by `transient` below
            if unreachable(exc) and not transient(exc):
                raise NetworkUnavailable(f"{what}: the Hub did not answer in time ({type(exc).__name__})") from None
            if not transient(exc):
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if isinstance(status, int):  # e.g. a 401/403/404 without the Hub's error code: no retry
                    raise HarnessError(f"{what}: the Hub refused the request (HTTP {status}"
                                       f"{_REFUSED.get(status, '')}).") from None
                raise
            last = exc
        if attempt < RETRIES - 1:
            time.sleep(BACKOFF_S * 2**attempt)
    raise NetworkUnavailable(f"{what}: the Hub did not answer after {RETRIES} tries ({type(last).__name__})")


def resolve_revision(what: str, repo: str, repo_type: str, revision: str = "main") -> str:
    """The commit a branch, tag or pull-request ref (`refs/pr/N`) points at now."""
    from huggingface_hub import HfApi

    return call(f"{what}: resolving {repo}@{revision}", HfApi().repo_info, repo, repo_type=repo_type,
                revision=revision).sha


def list_files(what: str, repo: str, repo_type: str, revision: str) -> dict[str, int | None]:
    """Every file of a repository at `revision`, with its size when the Hub says it."""
    from huggingface_hub import HfApi

    api = HfApi()
    items = call(f"{what}: listing {repo}", lambda: list(
        api.list_repo_tree(repo, repo_type=repo_type, revision=revision, recursive=True)))
    return {i.path: getattr(i, "size", None) for i in items if type(i).__name__ == "RepoFile"}


def download_file(what: str, repo: str, repo_type: str, revision: str, path: str, dest: Path) -> Path:
    """One file into `dest/<path>`; huggingface_hub resumes a partial download kept in dest/.cache."""
    from huggingface_hub import hf_hub_download

    local = call(f"{what}: downloading {repo}/{path}@{revision[:12]}", hf_hub_download, repo, path,
                 repo_type=repo_type, revision=revision, local_dir=dest)
    return Path(local)


def tree_url(repo: str, repo_type: str, revision: str) -> str:
    """The address of a repository's files at `revision` on the configured endpoint."""
    from huggingface_hub import constants

    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{constants.ENDPOINT}/{prefix}{repo}/tree/{revision}"

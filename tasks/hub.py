"""Push an export to the Hugging Face Hub: its Parquet files, card and config, as a dataset repo.

The token is huggingface_hub's own: HF_TOKEN, else the one `hf auth login` saved; HF_ENDPOINT
names another Hub. The Hub copy is the loadable part of the export (the card's `configs` name the
Parquet files); the JSONL files and `hf/` folders stay local. A failed push leaves the local
export as it was and says why in one line.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.exports.files import CARD, CONFIG_FILE
from rmforge.schemas.errors import UserError

PUSHED_FILES = [CARD, CONFIG_FILE, "*.parquet"]


class HubError(UserError, RuntimeError):
    """A push that cannot be made or failed, said in one line."""


def hub_token() -> str:
    """The token huggingface_hub would send; refused before any work when there is none."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import OIDCError

    try:
        token = get_token()
    except OIDCError as exc:  # HF_OIDC_RESOURCE set but the exchange failed
        raise HubError(f"cannot get a Hugging Face token: {exc}") from None
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return token


def check_push(repo_id: str) -> str:
    """Refuse a push that cannot be made before any work; returns the token to push with."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubError(f"--push-to-hub: {exc}") from None
    return hub_token()


def _use_timeout(seconds: float) -> None:
    """huggingface_hub's shared HTTP client waits forever by default (timeout=None): give every
    request it makes from now on in this process a limit to connect, send and read."""
    import httpx2
    from huggingface_hub import set_client_factory

    set_client_factory(lambda: httpx2.Client(follow_redirects=True, timeout=httpx2.Timeout(seconds)))


def _why(exc: Exception, endpoint: str, timeout_s: float) -> str:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        answer = f"{exc.response.status_code} {exc.response.reason_phrase}"
        return f"the Hub answered {answer}" + (f": {exc.server_message}" if exc.server_message else "")
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer from {endpoint} within {timeout_s:g} s"
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach {endpoint}: {exc or type(exc).__name__}"
    return str(exc)


@task(name="push-to-hub", cache_policy=NO_CACHE)
def push_export(
    out_dir: str, repo_id: str, private: bool = False, timeout_s: float = 60.0, run_id: str | None = None
) -> str:
    """Create the dataset repo if needed and commit the export's card, config and Parquet files;
    returns the commit's URL."""
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    token = check_push(repo_id)
    _use_timeout(timeout_s)
    api = HfApi(token=token)
    quiet_already = are_progress_bars_disabled()
    disable_progress_bars()  # the command shows its own progress; stderr stays for errors
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=Path(out_dir),
            allow_patterns=PUSHED_FILES,
            commit_message=f"rmforge export{f' (run {run_id})' if run_id else ''}",
        )
    except (httpx2.HTTPError, ValueError, OSError) as exc:  # ValueError: the Hub refused the card's metadata
        reason = _why(exc, api.endpoint, timeout_s)
        raise HubError(f"cannot push to the Hub dataset {repo_id}: {reason} (the export stays in {out_dir})") from exc
    finally:
        if not quiet_already:
            enable_progress_bars()
    return commit.commit_url

"""JSON from outside (webhooks, the campaign intake, audience files), parsed with one set of refusals.

``json.loads`` raises RecursionError, not a decode error, on input nested deeper than Python's stack
allows (``[`` 60,000 times fits in a webhook's size limit): every caller caught only JSONDecodeError, so
such a body was a 500 instead of a 400.
"""

from __future__ import annotations

import json
from typing import Any


class NotJson(ValueError):
    """The input is not JSON this project reads; the message says why, in a few words."""


def parse_json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise NotJson(f"not JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise NotJson("not UTF-8") from None
    except RecursionError:
        raise NotJson("nested too deeply") from None

"""A fast `yaml.safe_load` for recipes and the registry: libyaml's speed, the pure-Python loader's errors.

PyYAML's pure-Python `SafeLoader` spends most of its time on a recipe or registry.yaml scanning and
parsing; `CSafeLoader` does that in C, but is not a drop-in replacement:

- its composer is C code that recurses once per nesting level without a limit, so a deeply nested
  document (`[` * 100_000) crashes the interpreter (segfault) where the Python composer raises
  RecursionError;
- on odd input it can fail with errors that are not `YAMLError` (e.g. AttributeError from a scalar resolved
  as a timestamp that SafeConstructor cannot parse), and its messages differ from the pure loader's.

So `safe_load` runs libyaml's scanner and parser under PyYAML's own Python composer and `SafeConstructor`
(no Python objects from tags; RecursionError on deep nesting, as before). When that fails for any reason,
the text is loaded again with the pure-Python `SafeLoader`: every error (type, message, line) is the one
it always gave, except that the few non-YAML exceptions SafeConstructor lets through become YAMLErrors;
and a text the C parser refuses but the pure one accepts still loads. Documents both accept give the same
data. libyaml does accept a few texts the pure scanner refuses (a tab after a value, `?` inside a flow
scalar, a BOM inside the text): what they load to is validated like any other document.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure loader alone
    _HAVE_LIBYAML = False
else:
    _HAVE_LIBYAML = True

if _HAVE_LIBYAML:

    class _FastSafeLoader(Composer, CParser, SafeConstructor, Resolver):
        """libyaml's events (CParser) → PyYAML's Python composer (not CParser's own) → SafeConstructor."""

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`, faster where PyYAML has libyaml; errors are the pure loader's."""
    if _HAVE_LIBYAML:
        try:
            # SafeConstructor: as safe as yaml.safe_load. The stubs type Loader as PyYAML's own loader classes
            # only; yaml.load accepts any class built from the same mixins, as this one is.
            return yaml.load(text, Loader=_FastSafeLoader)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001, S110 - the pure loader below gives the verdict and the message
            pass
    try:
        return yaml.load(text, Loader=yaml.SafeLoader)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # SafeConstructor lets these through for values it cannot build (`!!timestamp 2001-13-01`,
        # `!!int x`): they are invalid YAML all the same, reported as such rather than as a crash.
        raise ConstructorError(None, None, f"cannot construct a value ({exc})") from None

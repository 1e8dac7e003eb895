"""Terminal prompts: questions, numbered menus and yes/no confirmations (``assess`` and the
interactive ``setup``). End of input counts as Ctrl-C, so a closed terminal writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class Quit(Exception):
    """The user typed q: stop, writing nothing more."""


class Back(Exception):
    """The user typed b at a menu: go back to the previous menu."""


class Prompter:
    """Terminal input/output; EOF counts as Ctrl-C (nothing is written)."""

    def __init__(self, read: Callable[[str], str] = input,
                 write: Callable[[str], None] | None = None) -> None:
        self.read = read
        self.write = write or (lambda text: print(text, flush=True))

    def ask(self, prompt: str) -> str:
        try:
            return self.read(prompt).strip()
        except EOFError:
            raise KeyboardInterrupt from None

    def choose(self, title: str, options: Sequence[tuple[str, object]],
               back: bool = False) -> object:
        """Numbered menu; accepts the number or the exact name; q quits; with ``back``, b
        raises Back (to the previous menu)."""
        self.write(title)
        for i, (label, _value) in enumerate(options, 1):
            self.write(f"  {i:>2}) {label}")
        names = {str(v).casefold(): v for _l, v in options}
        while True:
            hint = "b back, q to quit" if back else "q to quit"
            answer = self.ask(f"choose 1-{len(options)} ({hint}): ")
            if answer.casefold() == "q":
                raise Quit
            if back and answer.casefold() == "b":
                raise Back
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return options[int(answer) - 1][1]
            if answer.casefold() in names:
                return names[answer.casefold()]
            self.write(f"  please type a number from 1 to {len(options)}, or "
                       + ("b or q" if back else "q"))

    def confirm(self, question: str) -> bool:
        while True:
            answer = self.ask(f"{question} [y/n]: ").casefold()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            if answer == "q":  # with --all, q ends the walk; what was saved stays saved
                raise Quit
            self.write("  please answer y or n (q quits)")

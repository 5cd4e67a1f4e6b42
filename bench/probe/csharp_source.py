# Shared by the kernel probes (expand_variants.py, gate_logits.py): the CUDA source a C# raw string literal holds, so a
# probe compiles the kernel exactly as shipped rather than a copy of it.
import re


def raw(path, name):
    """The text of the `name = [Prefix +] \"\"\"…\"\"\"` raw string in the C# file at path, its indentation removed."""
    text = open(path).read()
    m = re.search(name + r' = (?:[\w.]+ \+ )?"""\n(.*?)\n(\s*)"""', text, re.S)
    body, indent = m.group(1), m.group(2)
    return "\n".join(l[len(indent):] if l.startswith(indent) else l.lstrip() for l in body.split("\n")) + "\n"

#!/usr/bin/env python3
"""Every relative link and image of the tracked Markdown files resolves in
the tree (as in a fresh clone: only files git tracks count). Prints each
broken one and exits 1; standard library only."""
import os
import re
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tracked = set(subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split("\n"))
dirs = {os.path.dirname(f) for f in tracked}
while any(os.path.dirname(d) not in dirs for d in dirs if d):
    dirs |= {os.path.dirname(d) for d in dirs}
link = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
bad = 0
for md in sorted(f for f in tracked if f.endswith(".md")):
    text = open(os.path.join(root, md), encoding="utf-8").read()
    for target in link.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(md), target.split("#")[0]))
        if path not in tracked and path not in dirs:
            print(f"{md}: broken link {target}")
            bad += 1
print(f"check_links: {bad} broken link(s)" if bad else "check_links: every link resolves")
sys.exit(1 if bad else 0)

"""reset_tokenizer_padding.py TOKENIZER_JSON -- sets a tokenizer.json's padding and truncation to null.

Checkpoints such as sentence-transformers' pad and truncate to a fixed length in their tokenizer.json;
the Rust side decides padding (to the longest in a batch) and truncation (data.max_seq_len) itself.
Used by tools/setup_teacher.sh and tools/setup_mpnet.sh.
"""

import json
import sys

path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    tok = json.load(f)
tok["padding"] = None
tok["truncation"] = None
with open(path, "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))

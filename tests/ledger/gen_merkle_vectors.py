"""Generate the SM3 Merkle golden vectors in ``testdata/`` from a naive reference.

Run from the repository root::

    .venv/bin/python tests/ledger/gen_merkle_vectors.py

The reference below transcribes RFC 9162 §2.1 literally (recursive MTH, PATH,
PROOF/SUBPROOF over the leaf *data*) and shares no code with
``ledger.merkle``: it hashes with ``cryptography`` directly and never imports
the production module. Before writing anything it checks itself against

* the GB/T 32905 SM3 example (``SM3("abc")``), and
* the SHA-256 RFC 6962 vectors in ``testdata/merkle_rfc6962_sha256.json``
  (transcribed from transparency-dev/merkle),

so the SM3 vectors rest on the RFC, not on the implementation under test.

Tampered cases carry the error class the verifier must raise. The class is
derived from the verifier's documented order of checks (index/sizes, hash
sizes, proof length from the reference PATH/PROOF, proof node sizes, roots).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

TESTDATA = Path(__file__).resolve().parent / "testdata"
HASH_SIZE = 32

Hash = Callable[[bytes], bytes]


def sm3_digest(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sha256_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------- the reference


class Reference:
    """RFC 9162 §2.1, word for word, over a list of leaf data ``D``."""

    def __init__(self, digest: Hash) -> None:
        self.h = digest

    def leaf(self, d: bytes) -> bytes:
        return self.h(b"\x00" + d)

    def mth(self, d: Sequence[bytes]) -> bytes:
        n = len(d)
        if n == 0:
            return self.h(b"")
        if n == 1:
            return self.leaf(d[0])
        k = largest_power_of_two_below(n)
        return self.h(b"\x01" + self.mth(d[:k]) + self.mth(d[k:]))

    def path(self, m: int, d: Sequence[bytes]) -> list[bytes]:
        """PATH(m, D[n]) for 0 <= m < n."""
        n = len(d)
        assert 0 <= m < n
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, d[:k]), self.mth(d[k:])]
        return [*self.path(m - k, d[k:]), self.mth(d[:k])]

    def proof(self, m: int, d: Sequence[bytes]) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m <= n."""
        return self.subproof(m, d, True)

    def subproof(self, m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [self.mth(d)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return [*self.subproof(m, d[:k], b), self.mth(d[k:])]
        return [*self.subproof(m - k, d[k:], False), self.mth(d[:k])]

    # RFC 9162 §2.1.3.2 and §2.1.4.2 as written (no length pre-check): True iff
    # the RFC accepts. Used to assert valid cases and to drop "tampered" cases
    # the RFC itself accepts (e.g. a size change that leaves the path shape alone).

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.h(b"\x01" + left + right)

    def accepts_inclusion(
        self, index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
    ) -> bool:
        if index >= size or index < 0:
            return False
        fn, sn, r = index, size - 1, leaf
        for p in path:
            if sn == 0:
                return False
            if fn % 2 == 1 or fn == sn:
                r = self.node(p, r)
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn // 2, sn // 2
            else:
                r = self.node(r, p)
            fn, sn = fn // 2, sn // 2
        return sn == 0 and r == root

    def accepts_consistency(
        self, first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
    ) -> bool:
        # Outside 0 < first < second the RFC algorithm does not apply; the
        # verifier's documented extension: equal sizes need an empty proof and
        # equal roots, size 0 needs an empty proof and the empty root.
        if first < 0 or first > second:
            return False
        if first == 0:
            return (
                not path and first_hash == self.h(b"") and (second > 0 or second_hash == first_hash)
            )
        if first == second:
            return not path and first_hash == second_hash
        if not path:
            return False
        path = list(path)
        if first & (first - 1) == 0:
            path.insert(0, first_hash)
        fn, sn = first - 1, second - 1
        while fn % 2 == 1:
            fn, sn = fn // 2, sn // 2
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn % 2 == 1 or fn == sn:
                fr, sr = self.node(c, fr), self.node(c, sr)
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn // 2, sn // 2
            else:
                sr = self.node(sr, c)
            fn, sn = fn // 2, sn // 2
        return fr == first_hash and sr == second_hash and sn == 0

    def range_proof(self, a: int, b: int, d: Sequence[bytes], lo: int = 0) -> list[bytes]:
        """MTH of every maximal subtree of MTH(D) (leaves lo, lo+1, ...) that lies
        wholly outside [a, b), in leaf order (0 <= a < b <= lo + len(D))."""
        n = len(d)
        if lo + n <= a or b <= lo:
            return [self.mth(d)]
        if a <= lo and lo + n <= b:
            return []
        k = largest_power_of_two_below(n)
        return [*self.range_proof(a, b, d[:k], lo), *self.range_proof(a, b, d[k:], lo + k)]

    def accepts_range(
        self,
        a: int,
        b: int,
        size: int,
        leaf_hashes: Sequence[bytes],
        proof: Sequence[bytes],
        root: bytes,
    ) -> bool:
        """Rebuild MTH(D[size]) top-down, taking each subtree outside [a, b) from the
        proof and each leaf inside from leaf_hashes, in order; all of both used."""
        if not 0 <= a < b <= size or len(leaf_hashes) != b - a:
            return False
        outside, inside = iter(proof), iter(leaf_hashes)

        def build(lo: int, hi: int) -> bytes:
            if hi <= a or b <= lo:
                return next(outside)
            if hi - lo == 1:
                return next(inside)
            k = largest_power_of_two_below(hi - lo)
            return self.node(build(lo, lo + k), build(lo + k, hi))

        try:
            calculated = build(0, size)
        except StopIteration:
            return False
        return next(outside, None) is None and calculated == root


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]) (shape only: computed on dummy data)."""
    return len(Reference(sha256_digest).path(index, [b""] * size))


def proof_length(old: int, new: int) -> int:
    if old in (0, new):
        return 0
    return len(Reference(sha256_digest).proof(old, [b""] * new))


def range_proof_length(a: int, b: int, size: int) -> int:
    return len(Reference(sha256_digest).range_proof(a, b, [b""] * size))


# --------------------------------------------------------------------------- self checks


def check_reference() -> None:
    expected_abc = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3_digest(b"abc").hex() == expected_abc, "SM3 does not match GB/T 32905"

    ct = json.loads((TESTDATA / "merkle_rfc6962_sha256.json").read_text())
    ref = Reference(sha256_digest)
    data = [bytes.fromhex(x) for x in ct["leaves"]]
    for n, root in enumerate(ct["roots"]):
        assert ref.mth(data[:n]).hex() == root, f"SHA-256 root of {n} leaves"
    for case in ct["inclusion"]:
        got = ref.path(case["leaf_index"], data[: case["tree_size"]])
        assert [p.hex() for p in got] == case["proof"], case["desc"]
    for case in ct["consistency"]:
        got = ref.proof(case["old_size"], data[: case["new_size"]])
        assert [p.hex() for p in got] == case["proof"], case["desc"]


# --------------------------------------------------------------------------- leaves


CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
CT_LEAVES.append("606162636465666768696a6b6c6d6e6f")
MAX_LEAVES = 129


def leaf_data() -> list[bytes]:
    """The RFC 6962 test leaves, then ``shancheng record <i>``."""
    data = [bytes.fromhex(x) for x in CT_LEAVES]
    data += [f"shancheng record {i}".encode() for i in range(len(data), MAX_LEAVES)]
    return data


# --------------------------------------------------------------------------- classification


def inclusion_error(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> str:
    if not 0 <= index < size:
        return "IndexOutOfRangeError"
    if len(root) != HASH_SIZE or len(leaf) != HASH_SIZE:
        return "HashSizeError"
    if len(proof) != path_length(index, size):
        return "InvalidProofError"
    if any(len(p) != HASH_SIZE for p in proof):
        return "HashSizeError"
    return "RootMismatchError"


def consistency_error(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> str:
    if not 0 <= old <= new:
        return "SizeError"
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return "HashSizeError"
    if len(proof) != proof_length(old, new):
        return "InvalidProofError"
    if any(len(p) != HASH_SIZE for p in proof):
        return "HashSizeError"
    return "RootMismatchError"


def range_error(
    a: int, b: int, size: int, leaf_hashes: Sequence[bytes], proof: Sequence[bytes], root: bytes
) -> str:
    if not 0 <= a < b <= size:
        return "RangeError"
    if len(root) != HASH_SIZE:
        return "HashSizeError"
    if len(proof) != range_proof_length(a, b, size):
        return "InvalidProofError"
    if any(len(p) != HASH_SIZE for p in proof):
        return "HashSizeError"
    if any(len(h) != HASH_SIZE for h in leaf_hashes[: b - a]):  # checked as they arrive
        return "HashSizeError"
    if len(leaf_hashes) != b - a:
        return "LeafCountError"
    return "RootMismatchError"


def flip(h: bytes, byte: int, bit: int) -> bytes:
    b = bytearray(h)
    b[byte] ^= 1 << bit
    return bytes(b)


# --------------------------------------------------------------------------- vector builders


def hexes(values: Sequence[bytes]) -> list[str]:
    return [v.hex() for v in values]


ROOT_SIZES = [*range(10), 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129]


def build_roots(ref: Reference, data: Sequence[bytes]) -> dict[str, Any]:
    cases = [
        {
            "desc": f"{n} leaves" if n != 1 else "1 leaf (root = leaf hash)",
            "leaves": hexes(data[:n]),
            "expected_root": ref.mth(data[:n]).hex(),
        }
        for n in ROOT_SIZES
    ]
    return {
        "comment": "SM3 RFC 9162 tree roots. leaves are leaf data (hex); leaf hash = "
        "SM3(00 || data), node = SM3(01 || left || right), empty root = SM3('').",
        "generator": "tests/ledger/gen_merkle_vectors.py",
        "hash": "SM3",
        "cases": cases,
    }


INCLUSION_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 100]
INCLUSION_TAMPER = [
    (0, 1),
    (0, 2),
    (1, 2),
    (2, 3),
    (0, 8),
    (5, 8),
    (7, 8),
    (4, 7),
    (6, 7),
    (3, 5),
    (0, 17),
    (16, 17),
    (30, 31),
    (42, 100),
    (99, 100),
]


def build_inclusion(ref: Reference, data: Sequence[bytes]) -> dict[str, Any]:
    leaves = [ref.leaf(d) for d in data]
    cases: list[dict[str, Any]] = []

    def case(
        desc: str, i: int, n: int, leaf: bytes, proof: Sequence[bytes], root: bytes, err: str | None
    ) -> None:
        cases.append(
            {
                "desc": desc,
                "leaf_index": i,
                "tree_size": n,
                "leaf_hash": leaf.hex(),
                "proof": hexes(proof),
                "root": root.hex(),
                "expected_error": err,
            }
        )

    for n in INCLUSION_SIZES:
        root = ref.mth(data[:n])
        for i in range(n):
            path = ref.path(i, data[:n])
            assert ref.accepts_inclusion(i, n, leaves[i], path, root)
            case(f"leaf {i} of {n}", i, n, leaves[i], path, root, None)

    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    for i, n in INCLUSION_TAMPER:
        root = ref.mth(data[:n])
        leaf = leaves[i]
        proof = ref.path(i, data[:n])
        at = f"leaf {i} of {n}"
        tampered: list[tuple[str, int, int, bytes, list[bytes], bytes]] = []
        for k in range(len(proof)):
            for byte, bit in ((0, 3), (31, 0))[: 2 if k == len(proof) - 1 else 1]:
                bad = list(proof)
                bad[k] = flip(bad[k], byte, bit)
                tampered.append(
                    (f"proof[{k}] byte {byte} bit {bit} flipped", i, n, leaf, bad, root)
                )
        if proof:
            tampered += [
                ("truncated proof (last node dropped)", i, n, leaf, proof[:-1], root),
                ("truncated proof (first node dropped)", i, n, leaf, proof[1:], root),
                ("empty proof", i, n, leaf, [], root),
                ("proof node cut to 31 bytes", i, n, leaf, [proof[0][:31], *proof[1:]], root),
                ("proof reversed", i, n, leaf, proof[::-1], root),
            ]
        if len(proof) > 1:
            tampered.append(
                ("extra node inserted", i, n, leaf, [proof[0], some_hash, *proof[1:]], root)
            )
        tampered += [
            ("extended proof (zero node appended)", i, n, leaf, [*proof, bytes(32)], root),
            ("extended proof (root appended)", i, n, leaf, [*proof, root], root),
            ("extended proof (root prepended)", i, n, leaf, [root, *proof], root),
            ("extended proof (empty node appended)", i, n, leaf, [*proof, b""], root),
            ("index + 1", i + 1, n, leaf, proof, root),
            ("negative index", -1, n, leaf, proof, root),
            ("index ^ 2", i ^ 2, n, leaf, proof, root),
            ("index = tree size", n, n, leaf, proof, root),
            ("tree size + 1", i, n + 1, leaf, proof, root),
            ("tree size - 1", i, n - 1, leaf, proof, root),
            ("tree size * 2", i, n * 2, leaf, proof, root),
            ("tree size // 2", i, n // 2, leaf, proof, root),
            ("tree size 0", i, 0, leaf, proof, root),
            ("wrong leaf (another leaf's hash)", i, n, leaves[(i + 1) % len(leaves)], proof, root),
            ("leaf hash without the 00 prefix", i, n, ref.h(data[i]), proof, root),
            ("leaf data instead of leaf hash", i, n, data[i], proof, root),
            ("leaf hash bit flipped", i, n, flip(leaf, 7, 7), proof, root),
            ("root bit flipped", i, n, leaf, proof, flip(root, 31, 7)),
            ("root of the empty tree", i, n, leaf, proof, ref.mth([])),
            ("root of the tree one larger", i, n, leaf, proof, ref.mth(data[: n + 1])),
            ("root cut to 31 bytes", i, n, leaf, proof, root[:31]),
        ]
        if i > 0:
            tampered.append(("index - 1", i - 1, n, leaf, proof, root))
        tampered += [
            ("checkpoint of size + 1", i, n + 1, leaf, proof, ref.mth(data[: n + 1])),
            ("checkpoint of size - 1", i, n - 1, leaf, proof, ref.mth(data[: n - 1])),
        ]
        for desc, ti, tn, tleaf, tproof, troot in tampered:
            if ref.accepts_inclusion(ti, tn, tleaf, tproof, troot):
                ACCEPTED.append(f"inclusion {at}: {desc}")
                continue
            err = inclusion_error(ti, tn, tleaf, tproof, troot)
            case(f"{at}: {desc}", ti, tn, tleaf, tproof, troot, err)
    return {
        "comment": "SM3 RFC 9162 inclusion proofs (PATH) and tampered variants. "
        "expected_error null = the proof verifies and equals the generated proof; "
        "otherwise the verifier raises that error class. leaves = leaf data (hex) of "
        "the tree; a case of tree_size n uses the first n.",
        "generator": "tests/ledger/gen_merkle_vectors.py",
        "hash": "SM3",
        "leaves": hexes(data),
        "cases": cases,
    }


CONSISTENCY_EXTRA = [
    (0, 0),
    (0, 1),
    (0, 7),
    (0, 100),
    (7, 31),
    (16, 31),
    (17, 31),
    (1, 100),
    (31, 100),
    (32, 100),
    (64, 100),
    (99, 100),
    (100, 100),
    (1, 129),
    (64, 129),
    (100, 129),
    (127, 128),
    (128, 129),
]
CONSISTENCY_TAMPER = [
    (1, 2),
    (1, 8),
    (2, 5),
    (3, 7),
    (4, 7),
    (6, 7),
    (6, 8),
    (7, 8),
    (5, 16),
    (8, 16),
    (16, 17),
    (17, 31),
    (31, 100),
    (64, 100),
    (99, 100),
    (1, 100),
]


def build_consistency(ref: Reference, data: Sequence[bytes]) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def case(
        desc: str, m: int, n: int, r1: bytes, r2: bytes, proof: Sequence[bytes], err: str | None
    ) -> None:
        cases.append(
            {
                "desc": desc,
                "old_size": m,
                "new_size": n,
                "old_root": r1.hex(),
                "new_root": r2.hex(),
                "proof": hexes(proof),
                "expected_error": err,
            }
        )

    def root(n: int) -> bytes:
        return ref.mth(data[:n])

    def proof_of(m: int, n: int) -> list[bytes]:
        return [] if m == 0 else ref.proof(m, data[:n])

    pairs = [(m, n) for n in range(1, 18) for m in range(1, n + 1)] + CONSISTENCY_EXTRA
    for m, n in pairs:
        assert ref.accepts_consistency(m, n, root(m), root(n), proof_of(m, n))
        case(f"{m} to {n}", m, n, root(m), root(n), proof_of(m, n), None)

    for m, n in CONSISTENCY_TAMPER:
        r1, r2, proof = root(m), root(n), proof_of(m, n)
        at = f"{m} to {n}"
        tampered: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = []
        for k in range(len(proof)):
            for byte, bit in ((0, 4), (31, 0))[: 2 if k == len(proof) - 1 else 1]:
                bad = list(proof)
                bad[k] = flip(bad[k], byte, bit)
                tampered.append((f"proof[{k}] byte {byte} bit {bit} flipped", m, n, r1, r2, bad))
        tampered += [
            ("truncated proof (last node dropped)", m, n, r1, r2, proof[:-1]),
            ("truncated proof (first node dropped)", m, n, r1, r2, proof[1:]),
            ("empty proof", m, n, r1, r2, []),
            ("proof node cut to 31 bytes", m, n, r1, r2, [proof[0][:31], *proof[1:]]),
            ("extended proof (zero node appended)", m, n, r1, r2, [*proof, bytes(32)]),
            ("extended proof (old root appended)", m, n, r1, r2, [*proof, r1]),
            ("extended proof (new root appended)", m, n, r1, r2, [*proof, r2]),
            ("extended proof (old root prepended)", m, n, r1, r2, [r1, *proof]),
            ("extended proof (proof[0] repeated)", m, n, r1, r2, [proof[0], *proof]),
            ("extended proof (empty node appended)", m, n, r1, r2, [*proof, b""]),
            ("swapped roots", m, n, r2, r1, proof),
            ("swapped sizes and roots (time travel)", n, m, r2, r1, proof),
            ("old root bit flipped", m, n, flip(r1, 0, 0), r2, proof),
            ("new root bit flipped", m, n, r1, flip(r2, 31, 7), proof),
            ("old root = root of old size - 1", m, n, root(m - 1), r2, proof),
            ("new root = root of new size - 1", m, n, r1, root(n - 1), proof),
            ("old size - 1", m - 1, n, r1, r2, proof),
            ("old size + 1", m + 1, n, r1, r2, proof),
            ("old size ^ 2", m ^ 2, n, r1, r2, proof),
            ("new size + 1", m, n + 1, r1, r2, proof),
            ("new size - 1", m, n - 1, r1, r2, proof),
            ("new size * 2", m, n * 2, r1, r2, proof),
            ("new size // 2", m, n // 2, r1, r2, proof),
            ("negative old size", -1, n, r1, r2, proof),
            ("old root cut to 31 bytes", m, n, r1[:31], r2, proof),
        ]
        # A real proof presented for the wrong pair of checkpoints (right roots, wrong proof).
        for m2, n2 in ((m, n + 1), (m + 1, n), (m - 1, n), (m, n - 1)):
            if 0 < m2 <= n2 and (m2, n2) != (m, n) and n2 <= len(data):
                tampered.append(
                    (f"proof of {at} presented as {m2} to {n2}", m2, n2, root(m2), root(n2), proof)
                )
        for desc, tm, tn, t1, t2, tproof in tampered:
            if ref.accepts_consistency(tm, tn, t1, t2, tproof):
                ACCEPTED.append(f"consistency {at}: {desc}")
                continue
            err = consistency_error(tm, tn, t1, t2, tproof)
            case(f"{at}: {desc}", tm, tn, t1, t2, tproof, err)

    # From the empty tree: the proof must be empty and the old root must be SM3("").
    empty = ref.mth([])
    case("0 to 5: non-empty proof", 0, 5, empty, root(5), [root(1)], "InvalidProofError")
    case("0 to 5: old root is not the empty root", 0, 5, root(1), root(5), [], "RootMismatchError")
    case("0 to 0: new root is not the empty root", 0, 0, empty, root(1), [], "RootMismatchError")
    case("5 to 5: different roots", 5, 5, root(5), root(4), [], "RootMismatchError")
    case("5 to 5: non-empty proof", 5, 5, root(5), root(5), [root(5)], "InvalidProofError")
    case("5 to 4: old size > new size", 5, 4, root(5), root(4), [], "SizeError")
    return {
        "comment": "SM3 RFC 9162 consistency proofs (PROOF/SUBPROOF) and tampered variants. "
        "expected_error null = the proof verifies and equals the generated proof; "
        "otherwise the verifier raises that error class. leaves = leaf data (hex); a case "
        "of new_size n uses the first n. Proofs from size 0 or between equal sizes are empty.",
        "generator": "tests/ledger/gen_merkle_vectors.py",
        "hash": "SM3",
        "leaves": hexes(data),
        "cases": cases,
    }


RANGE_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9]
RANGE_EXTRA = [
    (0, 13, 13),
    (0, 1, 13),
    (12, 13, 13),
    (5, 11, 13),
    (0, 16, 16),
    (3, 9, 16),
    (0, 16, 17),
    (16, 17, 17),
    (15, 17, 17),
    (7, 20, 31),
    (30, 31, 31),
    (0, 100, 100),
    (0, 64, 100),
    (42, 58, 100),
    (63, 65, 100),
    (96, 100, 100),
    (99, 100, 100),
    (0, 129, 129),
    (1, 128, 129),
]
RANGE_TAMPER = [
    (0, 1, 1),
    (0, 3, 3),
    (1, 2, 3),
    (2, 5, 8),
    (3, 4, 7),
    (1, 6, 7),
    (0, 5, 7),
    (4, 7, 7),
    (5, 11, 17),
    (16, 17, 17),
    (0, 16, 17),
    (7, 20, 31),
    (42, 58, 100),
    (99, 100, 100),
]


def build_range(ref: Reference, data: Sequence[bytes]) -> dict[str, Any]:
    leaves = [ref.leaf(d) for d in data]
    cases: list[dict[str, Any]] = []

    def case(
        desc: str,
        a: int,
        b: int,
        n: int,
        hashes: Sequence[bytes],
        proof: Sequence[bytes],
        root: bytes,
        err: str | None,
    ) -> None:
        cases.append(
            {
                "desc": desc,
                "begin": a,
                "end": b,
                "tree_size": n,
                "leaf_hashes": hexes(hashes),
                "proof": hexes(proof),
                "root": root.hex(),
                "expected_error": err,
            }
        )

    def valid(a: int, b: int, n: int) -> None:
        root = ref.mth(data[:n])
        proof = ref.range_proof(a, b, data[:n])
        assert ref.accepts_range(a, b, n, leaves[a:b], proof, root)
        case(f"leaves [{a}, {b}) of {n}", a, b, n, leaves[a:b], proof, root, None)

    for n in RANGE_SIZES:
        for a in range(n):
            for b in range(a + 1, n + 1):
                valid(a, b, n)
    for a, b, n in RANGE_EXTRA:
        valid(a, b, n)

    other = ref.leaf(b"a row that is not in the tree")
    for a, b, n in RANGE_TAMPER:
        root = ref.mth(data[:n])
        hashes = leaves[a:b]
        proof = ref.range_proof(a, b, data[:n])
        at = f"leaves [{a}, {b}) of {n}"
        mid = (b - a) // 2
        changed = list(hashes)
        changed[mid] = ref.leaf(data[a + mid] + b"!")
        T = tuple[str, int, int, int, list[bytes], list[bytes], bytes]
        tampered: list[T] = [
            ("one row changed", a, b, n, changed, proof, root),
            ("a row dropped (range unchanged)", a, b, n, hashes[:-1], proof, root),
            ("a row added (range unchanged)", a, b, n, [*hashes, other], proof, root),
            ("leaf hash bit flipped", a, b, n, [flip(hashes[0], 5, 1), *hashes[1:]], proof, root),
            ("leaf data instead of leaf hash", a, b, n, [data[a], *hashes[1:]], proof, root),
            ("root bit flipped", a, b, n, hashes, proof, flip(root, 0, 0)),
            ("root cut to 31 bytes", a, b, n, hashes, proof, root[:31]),
            ("root of the empty tree", a, b, n, hashes, proof, ref.mth([])),
            ("tree size + 1", a, b, n + 1, hashes, proof, root),
            ("checkpoint of size + 1", a, b, n + 1, hashes, proof, ref.mth(data[: n + 1])),
            ("extended proof (zero node appended)", a, b, n, hashes, [*proof, bytes(32)], root),
            ("extended proof (root prepended)", a, b, n, hashes, [root, *proof], root),
            ("extended proof (empty node appended)", a, b, n, hashes, [*proof, b""], root),
            ("empty range [begin, begin)", a, a, n, [], proof, root),
            ("end beyond the tree", a, n + 1, n, leaves[a : n + 1], proof, root),
            ("negative begin", -1, b, n, [leaves[0], *hashes], proof, root),
            ("begin after end", b, a, n, hashes, proof, root),
        ]
        if b - a > 1:
            dropped = [*hashes[:mid], *hashes[mid + 1 :]]
            tampered += [
                ("a row dropped, range shortened", a, b - 1, n, dropped, proof, root),
                (
                    "a row dropped, range shortened, its own proof",
                    a,
                    b - 1,
                    n,
                    dropped,
                    ref.range_proof(a, b - 1, data[:n]),
                    root,
                ),
                ("two rows swapped", a, b, n, [hashes[1], hashes[0], *hashes[2:]], proof, root),
                ("rows reversed", a, b, n, hashes[::-1], proof, root),
                ("last row repeated", a, b, n, [*hashes[:-1], hashes[-2]], proof, root),
            ]
        if b < n:
            shifted = leaves[a + 1 : b + 1]
            tampered += [
                ("rows [begin+1, end+1) presented as [begin, end)", a, b, n, shifted, proof, root),
                (
                    "rows [begin+1, end+1) with their proof, presented as [begin, end)",
                    a,
                    b,
                    n,
                    shifted,
                    ref.range_proof(a + 1, b + 1, data[:n]),
                    root,
                ),
                (
                    "a row added, range lengthened",
                    a,
                    b + 1,
                    n,
                    [*hashes[:mid], other, *hashes[mid:]],
                    ref.range_proof(a, b + 1, data[:n]),
                    root,
                ),
            ]
        if a > 0:
            earlier = leaves[a - 1 : b - 1]
            tampered.append(
                ("rows [begin-1, end-1) presented as [begin, end)", a, b, n, earlier, proof, root)
            )
        if n > 1 and b < n:
            tampered += [
                ("tree size - 1", a, b, n - 1, hashes, proof, root),
                ("checkpoint of size - 1", a, b, n - 1, hashes, proof, ref.mth(data[: n - 1])),
            ]
        for k in range(len(proof)):
            bad = list(proof)
            bad[k] = flip(bad[k], 31 if k % 2 else 0, k % 8)
            tampered.append((f"proof[{k}] bit flipped", a, b, n, hashes, bad, root))
        if proof:
            tampered += [
                ("truncated proof (last node dropped)", a, b, n, hashes, proof[:-1], root),
                ("truncated proof (first node dropped)", a, b, n, hashes, proof[1:], root),
                ("empty proof", a, b, n, hashes, [], root),
                ("proof node cut to 31 bytes", a, b, n, hashes, [proof[0][:31], *proof[1:]], root),
            ]
        if len(proof) > 1:
            tampered += [
                (
                    "first and last proof nodes swapped",
                    a,
                    b,
                    n,
                    hashes,
                    [proof[-1], *proof[1:-1], proof[0]],
                    root,
                ),
                ("proof reversed", a, b, n, hashes, proof[::-1], root),
            ]
        for desc, ta, tb, tn, thashes, tproof, troot in tampered:
            if ref.accepts_range(ta, tb, tn, thashes, tproof, troot):
                ACCEPTED.append(f"range {at}: {desc}")
                continue
            err = range_error(ta, tb, tn, thashes, tproof, troot)
            case(f"{at}: {desc}", ta, tb, tn, thashes, tproof, troot, err)
    return {
        "comment": "SM3 RFC 9162 range proofs (the maximal subtrees outside [begin, end), in "
        "leaf order) and tampered variants. leaf_hashes are the hashes presented as leaves "
        "[begin, end); expected_error null = the proof verifies and equals the generated "
        "proof; otherwise the verifier raises that error class. leaves = leaf data (hex); a "
        "case of tree_size n uses the first n.",
        "generator": "tests/ledger/gen_merkle_vectors.py",
        "hash": "SM3",
        "leaves": hexes(data),
        "cases": cases,
    }


ACCEPTED: list[str] = []
"""Mutations the RFC algorithms accept (left out of the vectors; printed by main)."""


def build_vectors() -> dict[str, dict[str, Any]]:
    """File name -> content of every SM3 vector file."""
    check_reference()
    ACCEPTED.clear()
    ref = Reference(sm3_digest)
    data = leaf_data()
    return {
        "merkle_roots.json": build_roots(ref, data),
        "merkle_inclusion.json": build_inclusion(ref, data),
        "merkle_consistency.json": build_consistency(ref, data),
        "merkle_range.json": build_range(ref, data),
    }


def render(content: dict[str, Any]) -> str:
    """JSON with one case per line (diffable, and a third of the size of indented JSON)."""
    head = {k: v for k, v in content.items() if k != "cases"}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "cases": [')
    cases = [f"    {json.dumps(case)}" for case in content["cases"]]
    lines.append(",\n".join(cases))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    for name, content in build_vectors().items():
        path = TESTDATA / name
        path.write_text(render(content))
        print(f"wrote {path} ({len(content['cases'])} cases)")
    for desc in ACCEPTED:
        print(f"left out (the RFC accepts it): {desc}")


if __name__ == "__main__":
    main()

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title AnchorRegistry — on-chain anchors for the Shancheng exchange's Merkle log
/// @author Shancheng Data Exchange
/// @notice Stores, per anchored checkpoint of the exchange's SM3 Merkle log, the tree
///         root and the block timestamp at which it was anchored. Tree sizes strictly
///         grow, so the registry is an append-only, totally ordered history of roots:
///         an auditor holding a checkpoint (tree size, root) checks it with one view call.
/// @dev Roles. The deployer becomes the owner AND an anchorer. The owner manages the
///      set of anchorers (add/remove) and may hand ownership over; ownership and
///      anchoring are separate roles, so a new owner is not made an anchorer implicitly
///      and removing the owner from the anchorers is allowed (a cold-storage owner key).
///
///      Storage layout, chosen for gas:
///      - slot 0 packs `owner` (20 bytes), `_latestTreeSize` (8) and `_anchorCount` (4).
///        The constructor writes a non-zero owner, so the slot is never zero again and
///        every anchor — the first included — pays a warm-ish non-zero → non-zero write
///        (5 000 gas) instead of a zero → non-zero one (20 000 gas).
///      - `_anchors[treeSize]` is a 2-slot struct: the 32-byte root, then the 8-byte
///        timestamp packed with the 20-byte anchorer. Recording the anchorer is free:
///        the timestamp needs that second slot anyway.
contract AnchorRegistry {
    /// @dev One anchored checkpoint. Two storage slots.
    struct AnchorRecord {
        bytes32 root;
        uint64 timestamp;
        address anchorer;
    }

    /// @notice The account allowed to manage anchorers and transfer ownership.
    address public owner;
    uint64 private _latestTreeSize;
    uint32 private _anchorCount;

    mapping(uint64 treeSize => AnchorRecord) private _anchors;
    mapping(address account => bool) private _anchorers;

    /// @notice A checkpoint (treeSize, root) was anchored by `anchorer` at block time `timestamp`.
    event Anchored(uint64 indexed treeSize, bytes32 root, address indexed anchorer, uint64 timestamp);
    /// @notice `account` may now anchor.
    event AnchorerAdded(address indexed account);
    /// @notice `account` may no longer anchor.
    event AnchorerRemoved(address indexed account);
    /// @notice Ownership moved from `previousOwner` to `newOwner`.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice The root to anchor is zero (never a valid Merkle root).
    error ZeroRoot();
    /// @notice `given` is not strictly greater than the latest anchored tree size `latest`.
    error TreeSizeNotIncreasing(uint64 latest, uint64 given);
    /// @notice `account` is not an authorised anchorer.
    error NotAnchorer(address account);
    /// @notice `account` is not the owner.
    error NotOwner(address account);
    /// @notice The zero address cannot be an anchorer or the owner.
    error ZeroAddress();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Deploys the registry; the deployer is the owner and the first anchorer.
    constructor() {
        owner = msg.sender;
        _anchorers[msg.sender] = true;
        emit OwnershipTransferred(address(0), msg.sender);
        emit AnchorerAdded(msg.sender);
    }

    /// @notice Anchors the checkpoint (`treeSize`, `root`) at the current block timestamp.
    /// @dev Reverts with `NotAnchorer` for an unauthorised sender, `ZeroRoot` for a zero root
    ///      and `TreeSizeNotIncreasing` unless `treeSize` exceeds the latest anchored size
    ///      (so the first anchor needs `treeSize >= 1`).
    /// @param treeSize Number of leaves in the checkpointed tree.
    /// @param root The tree's SM3 Merkle root (RFC 9162 structure).
    function anchor(uint64 treeSize, bytes32 root) external {
        if (!_anchorers[msg.sender]) revert NotAnchorer(msg.sender);
        if (root == bytes32(0)) revert ZeroRoot();
        uint64 latestSize = _latestTreeSize;
        if (treeSize <= latestSize) revert TreeSizeNotIncreasing(latestSize, treeSize);

        uint64 timestamp = uint64(block.timestamp);
        _anchors[treeSize] = AnchorRecord({root: root, timestamp: timestamp, anchorer: msg.sender});
        _latestTreeSize = treeSize;
        unchecked {
            // 2^32 anchors at one per block would take centuries on any chain.
            ++_anchorCount;
        }
        emit Anchored(treeSize, root, msg.sender, timestamp);
    }

    /// @notice The anchor stored for `treeSize`, or zeros if that size was never anchored.
    /// @return root The anchored root.
    /// @return timestamp The block timestamp of the anchoring transaction.
    function anchorOf(uint64 treeSize) external view returns (bytes32 root, uint64 timestamp) {
        AnchorRecord storage record = _anchors[treeSize];
        return (record.root, record.timestamp);
    }

    /// @notice The full record for `treeSize`, including who anchored it; zeros if none.
    /// @return root The anchored root.
    /// @return timestamp The block timestamp of the anchoring transaction.
    /// @return anchorer The account that anchored it.
    function anchorRecord(uint64 treeSize)
        external
        view
        returns (bytes32 root, uint64 timestamp, address anchorer)
    {
        AnchorRecord storage record = _anchors[treeSize];
        return (record.root, record.timestamp, record.anchorer);
    }

    /// @notice The most recent anchor, or zeros if nothing was anchored yet.
    /// @return treeSize The latest (largest) anchored tree size.
    /// @return root Its root.
    /// @return timestamp Its block timestamp.
    function latest() external view returns (uint64 treeSize, bytes32 root, uint64 timestamp) {
        treeSize = _latestTreeSize;
        AnchorRecord storage record = _anchors[treeSize];
        return (treeSize, record.root, record.timestamp);
    }

    /// @notice Whether `account` may anchor.
    function isAnchorer(address account) external view returns (bool) {
        return _anchorers[account];
    }

    /// @notice How many checkpoints were anchored.
    function anchorCount() external view returns (uint64) {
        return _anchorCount;
    }

    /// @notice Authorises `account` to anchor. Owner only; a no-op if already authorised.
    function addAnchorer(address account) external onlyOwner {
        if (account == address(0)) revert ZeroAddress();
        if (_anchorers[account]) return;
        _anchorers[account] = true;
        emit AnchorerAdded(account);
    }

    /// @notice Revokes `account`'s right to anchor. Owner only; a no-op if not authorised.
    function removeAnchorer(address account) external onlyOwner {
        if (!_anchorers[account]) return;
        _anchorers[account] = false;
        emit AnchorerRemoved(account);
    }

    /// @notice Hands ownership to `newOwner` (who is not made an anchorer). Owner only.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}

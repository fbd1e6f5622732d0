// Text normalisation, shingles, MinHash fingerprints and Jaccard similarity for duplicate
// detection. Everything is deterministic (seeded hashes) so fingerprints stored by one process
// compare correctly with those computed by another, across restarts and replicas.
import Foundation
import LiaisonBytes


/// Turns free text into comparable tokens: lower-cases (Unicode-aware), folds diacritics
/// ("Zahlung fehlgeschlagen" and "zahlúng" compare equal on "zahlung"), splits on anything that is
/// not a letter or digit, drops stop words and single letters, and strips common English
/// inflections ("errors" -> "error", "failing"/"failed"/"fails" -> "fail").
/// Ideographic scripts (no spaces) yield one token per ideograph.
public struct TextNormalizer: Sendable, Hashable {
    /// Words dropped from the token stream (already folded).
    public var stopWords: Set<String>
    /// Whether to strip English inflection suffixes from ASCII tokens.
    public var stem: Bool

    /// The default: multilingual stop words (en, de, fr, es, it, pt, nl) and stemming on.
    public static let standard = TextNormalizer(stopWords: TextNormalizer.defaultStopWords, stem: true)

    /// Creates the value from its fields.
    public init(stopWords: Set<String>, stem: Bool) {
        self.stopWords = stopWords
        self.stem = stem
    }

    /// A small stop-word list: function words that say nothing about the problem.
    public static let defaultStopWords: Set<String> = Set("""
        a an the and or but if of to in on at by for from with without into onto over under about as is are was were be
        been being am do does did done have has had having it its this that these those there here i me my we us our you
        your he him his she her they them their what which who whom when where why how all any some no not nor so than
        too very just also can could will would shall should may might must again still please hi hello thanks thank
        since today now then get got getting keep keeps kept seem seems
        der die das den dem des ein eine einer eines und oder aber ist sind war nicht kein keine ich wir sie es mit von zu
        im am auf fur bei seit noch schon bitte
        le la les un une des et ou est sont pas je nous vous il elle ils avec pour dans sur au aux du ce cette
        el los las una y es son yo con por para en del al lo
        il lo gli uno e di da con per non che
        o os um uma de do da em com nao
        het een en van niet ik wij met voor op
        """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))

    /// Letters that do not decompose into base letter + mark but have a conventional ASCII folding.
    private static let specialFolds: [Unicode.Scalar: String] = [
        "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ħ": "h",
    ]

    /// Lower-cases and folds diacritics, keeping everything else (punctuation included).
    public func fold(_ text: String) -> String {
        // ASCII (most reports): lower-casing is all there is to do, without Unicode tables.
        if text.utf8.allSatisfy({ $0 < 0x80 }) {
            return String(decoding: text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
        }
        return foldUnicode(text)
    }

    /// `fold` through the Unicode tables (any text).
    func foldUnicode(_ text: String) -> String {
        let decomposed = text.lowercased().decomposedStringWithCanonicalMapping
        var out = String.UnicodeScalarView()
        for scalar in decomposed.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark:
                continue
            default:
                if let folded = Self.specialFolds[scalar] {
                    out.append(contentsOf: folded.unicodeScalars)
                } else {
                    out.append(scalar)
                }
            }
        }
        return String(out)
    }

    /// The tokens of `text`, in order, after folding, splitting, stop-word removal and stemming.
    public func tokens(_ text: String) -> [String] {
        var result: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            guard !current.isEmpty else { return }
            let word = String(current)
            current = String.UnicodeScalarView()
            let isNumber = word.unicodeScalars.allSatisfy {
                $0.value < 0x80 ? ($0.value >= 0x30 && $0.value <= 0x39) : $0.properties.numericType != nil
            }
            if !isNumber && word.unicodeScalars.count < 2 { return }
            if stopWords.contains(word) { return }
            let token = stem ? Self.stemmed(word) : word
            if !stopWords.contains(token) { result.append(token) }
        }
        for scalar in fold(text).unicodeScalars {
            let v = scalar.value
            if v < 0x80 {
                // ASCII: letters and digits make words, everything else separates them (what
                // the Unicode properties below say for these scalars).
                if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) || (v >= 0x30 && v <= 0x39) {
                    current.append(scalar)
                } else {
                    flush()
                }
                continue
            }
            let p = scalar.properties
            if p.isIdeographic {
                flush()
                result.append(String(scalar))
            } else if p.isAlphabetic || p.numericType != nil {
                current.append(scalar)
            } else {
                flush()
            }
        }
        flush()
        return result
    }

    /// Strips common English inflections from an ASCII word: "ies" -> "y", "ing", "ed", "es" after
    /// s/x/z/ch/sh, plural "s" (not "ss"/"us"/"is"); a doubled final consonant left behind
    /// ("stopped" -> "stopp") is undoubled. Words of four letters or fewer are kept as they are.
    public static func stemmed(_ word: String) -> String {
        guard word.utf8.count > 4, word.utf8.allSatisfy({ $0 >= 0x61 && $0 <= 0x7a }) else { return word }
        var w = Array(word.utf8)
        func ends(_ s: String) -> Bool { w.count > s.utf8.count && w.suffix(s.utf8.count).elementsEqual(s.utf8) }
        var strippedVerbal = false
        if ends("ies") && w.count > 4 {
            w.removeLast(3)
            w.append(0x79)
        } else if ends("ing") && w.count >= 6 {
            w.removeLast(3)
            strippedVerbal = true
        } else if ends("ed") && w.count >= 5 && !ends("eed") {
            w.removeLast(2)
            strippedVerbal = true
        } else if ends("sses") || ends("xes") || ends("zes") || ends("ches") || ends("shes") {
            w.removeLast(2)
        } else if ends("s") && !ends("ss") && !ends("us") && !ends("is") {
            w.removeLast(1)
        }
        if strippedVerbal, w.count >= 3, w[w.count - 1] == w[w.count - 2] {
            let c = w[w.count - 1]
            if !"aeiouylsz".utf8.contains(c) { w.removeLast() }
        }
        return String(decoding: w, as: UTF8.self)
    }
}

/// How texts become shingle sets and MinHash signatures. Stored fingerprints are only comparable
/// when made with the same `shingleSize`, `permutations` and `seed` (checked on comparison).
public struct SimilarityConfig: Sendable, Hashable {
    /// The tokenizer.
    public var normalizer: TextNormalizer
    /// Word n-gram size of the shingles. 1 (single tokens) suits short support messages best:
    /// paraphrases rarely share word order.
    public var shingleSize: Int
    /// Number of MinHash permutations (signature length).
    public var permutations: Int
    /// Seed of the MinHash hash family.
    public var seed: UInt64

    /// The default: standard normalizer, single-token shingles, 128 permutations, fixed seed.
    public static let standard = SimilarityConfig(normalizer: .standard, shingleSize: 1, permutations: 128,
                                                  seed: 0x4c69_6169_736f_6e31)

    /// Creates the value from its fields.
    public init(normalizer: TextNormalizer, shingleSize: Int, permutations: Int, seed: UInt64) {
        precondition(shingleSize >= 1 && permutations >= 1 && permutations <= Int(UInt16.max))
        self.normalizer = normalizer
        self.shingleSize = shingleSize
        self.permutations = permutations
        self.seed = seed
    }

    /// The shingle set of `text`: word n-grams (joined by a space) of its tokens. A text with fewer
    /// tokens than `shingleSize` yields its whole token sequence as one shingle; a text without
    /// tokens yields the empty set.
    public func shingles(_ text: String) -> Set<String> { shingles(tokens: normalizer.tokens(text)) }

    /// `shingles(_:)` of a text already split by `normalizer`.
    public func shingles(tokens: [String]) -> Set<String> {
        guard !tokens.isEmpty else { return [] }
        guard tokens.count >= shingleSize else { return [tokens.joined(separator: " ")] }
        if shingleSize == 1 { return Set(tokens) }
        var out = Set<String>()
        for i in 0 ... (tokens.count - shingleSize) {
            out.insert(tokens[i ..< i + shingleSize].joined(separator: " "))
        }
        return out
    }
}

/// Seeded 64-bit hashing: FNV-1a over UTF-8 followed by the SplitMix64 finalizer.
public enum SeededHash {
    /// SplitMix64 finalizer (a bijection on UInt64 with good avalanche).
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// FNV-1a 64 of the string's UTF-8 bytes, mixed.
    public static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return mix(h)
    }

    /// `count` per-permutation seeds derived from `seed` (a SplitMix64 stream).
    public static func seeds(_ seed: UInt64, count: Int) -> [UInt64] {
        var state = seed
        return (0 ..< count).map { _ in
            state = state &+ 0x9e37_79b9_7f4a_7c15
            return mix(state)
        }
    }
}

/// A report's MinHash signature over its shingle set: what the repository stores per report (as
/// `encode()` bytes) to find candidate duplicates without re-reading texts. The fraction of equal
/// positions between two signatures estimates the Jaccard similarity of the shingle sets (standard
/// error about sqrt(J(1-J)/permutations), 0.044 at worst for 128).
///
/// b-bit minwise hashing (Li and König, "b-Bit Minwise Hashing", WWW 2010): each position keeps
/// only 8 bits of its 64-bit minimum (bits 32 to 39, uniform for any realistic shingle count).
/// Two positions then also agree by chance, with probability r = 1/256 when their minima differ,
/// so the fraction p of equal positions is J + (1 - J) r, and `estimatedJaccard` returns the
/// unbiased (p - r) / (1 - r). Its standard error is sqrt(p(1-p)/permutations) / (1 - r): within
/// 0.4% of the full-width estimate's. A fingerprint is 144 bytes for 128 permutations (format 2,
/// 32 bits per position, was 528; format 1, 64 bits, 1,040). Every candidate of every new report
/// is read from PostgreSQL and compared, so the size is paid on each submission.
///
/// Formats 1 and 2 still decode, keeping their wider values; a comparison uses the narrower of
/// the two widths (formats 1 and 2 keep the same bits 32 to 39), so old and new reports compare.
public struct ReportFingerprint: Hashable, Sendable {
    /// Version byte of the encoding: 3 stores 8 bits per position. Versions 1 (64-bit minima)
    /// and 2 (their high 32 bits) still decode.
    public static let formatVersion: UInt8 = 3
    /// Bits kept per position in fingerprints made now.
    public static let storedBits = 8

    /// Shingle size the signature was made with.
    public let shingleSize: Int
    /// Seed of the hash family.
    public let seed: UInt64
    /// Number of distinct shingles of the text (0 for a text without tokens).
    public let shingleCount: Int
    /// Per permutation, the low `bits` bits of the high 32 bits of its 64-bit minimum hash.
    public let minHashes: [UInt32]
    /// How many low bits of each `minHashes` value are kept: 8 (format 3, and every fingerprint
    /// computed now) or 32 (decoded from formats 1 and 2).
    public let bits: Int

    /// Computes the fingerprint of `text`.
    public init(text: String, config: SimilarityConfig = .standard) {
        self.init(shingles: config.shingles(text), config: config)
    }

    /// Computes the fingerprint of a shingle set.
    public init(shingles: Set<String>, config: SimilarityConfig = .standard) {
        self.init(shingleSize: config.shingleSize, seed: config.seed, shingleCount: shingles.count,
                  minHashes: Self.minima(shingles: shingles, config: config).map { UInt32(truncatingIfNeeded: $0 >> 32) })
    }

    /// The 64-bit minimum hash per permutation.
    static func minima(shingles: Set<String>, config: SimilarityConfig) -> [UInt64] {
        let seeds = SeededHash.seeds(config.seed, count: config.permutations)
        var mins = [UInt64](repeating: .max, count: config.permutations)
        for shingle in shingles {
            let base = SeededHash.hash(shingle)
            for i in 0 ..< seeds.count {
                let h = SeededHash.mix(base ^ seeds[i])
                if h < mins[i] { mins[i] = h }
            }
        }
        return mins
    }

    /// Rebuilds a fingerprint from its parts (`minHashes` keeping their low `bits` bits).
    public init(shingleSize: Int, seed: UInt64, shingleCount: Int, minHashes: [UInt32], bits: Int = ReportFingerprint.storedBits) {
        self.shingleSize = shingleSize
        self.seed = seed
        self.shingleCount = shingleCount
        self.bits = bits
        self.minHashes = bits >= 32 ? minHashes : minHashes.map { $0 & UInt32((1 << bits) - 1) }
    }

    /// Whether two fingerprints were made the same way and can be compared.
    public func isComparable(with other: ReportFingerprint) -> Bool {
        shingleSize == other.shingleSize && seed == other.seed && minHashes.count == other.minHashes.count
    }

    /// Estimated Jaccard similarity of the two texts' shingle sets, in [0, 1]; 0 when either text
    /// had no tokens or the fingerprints are not comparable. Compares the narrower width's bits and
    /// removes the chance agreements of that width (see the type's description).
    public func estimatedJaccard(with other: ReportFingerprint) -> Double {
        guard isComparable(with: other), shingleCount > 0, other.shingleCount > 0, !minHashes.isEmpty else { return 0 }
        let width = min(bits, other.bits)
        let mask: UInt32 = width >= 32 ? .max : UInt32((1 << width) - 1)
        var equal = 0
        for i in 0 ..< minHashes.count where (minHashes[i] ^ other.minHashes[i]) & mask == 0 { equal += 1 }
        let p = Double(equal) / Double(minHashes.count)
        // 32-bit positions agree by chance with probability 2^-32: nothing to remove.
        if width >= 32 { return p }
        let r = 1 / Double(1 << width)
        return min(1, max(0, (p - r) / (1 - r)))
    }

    /// `estimatedJaccard(with: ReportFingerprint(decoding: bytes))` without decoding the stored
    /// bytes into a fingerprint (no allocation for the current format): the same value, bit for
    /// bit; nil when the bytes do not decode. The matcher compares every open case's stored
    /// reports on each submission, most of which decide nothing.
    public func estimatedJaccard(withEncoded bytes: ArraySlice<UInt8>) -> Double? {
        guard bytes.count >= 16, bytes[bytes.startIndex] == Self.formatVersion else {
            // Older formats (or bytes that do not decode) take the general path.
            return (try? ReportFingerprint(decoding: bytes)).map { estimatedJaccard(with: $0) }
        }
        var reader = ByteReader(bytes)
        _ = reader.u8()
        let n = Int(reader.u8()!)
        let k = Int(reader.u16()!)
        let otherSeed = reader.u64()!
        let count = Int(reader.u32()!)
        guard n >= 1, k >= 1, bytes.count == 16 + k else { return nil }
        // As `estimatedJaccard(with:)` with the other side's 8 bits per position.
        guard shingleSize == n, seed == otherSeed, minHashes.count == k, shingleCount > 0, count > 0 else { return 0 }
        let width = min(bits, Self.storedBits)
        let mask: UInt32 = width >= 32 ? .max : UInt32((1 << width) - 1)
        var equal = 0
        bytes.withUnsafeBufferPointer { b in
            let start = reader.offset - bytes.startIndex
            for i in 0 ..< k where (minHashes[i] ^ UInt32(b[start + i])) & mask == 0 { equal += 1 }
        }
        let p = Double(equal) / Double(k)
        let r = 1 / Double(1 << width)
        return min(1, max(0, (p - r) / (1 - r)))
    }

    /// Bytes to store (format 3): version (1), shingle size (1), permutations (2, big-endian),
    /// seed (8), shingle count (4), then one byte per position. 144 bytes for 128 permutations.
    /// A fingerprint decoded from an older format is written narrowed to 8 bits.
    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.formatVersion, UInt8(clamping: shingleSize)]
        out.reserveCapacity(16 + minHashes.count)
        out.appendBigEndian(UInt16(clamping: minHashes.count))
        out.appendBigEndian(seed)
        out.appendBigEndian(UInt32(clamping: shingleCount))
        for h in minHashes { out.append(UInt8(truncatingIfNeeded: h)) }
        return out
    }

    /// Decodes bytes made by `encode()`, or by format 1 (64-bit minima, kept as their high 32
    /// bits) or 2 (those 32 bits).
    public init(decoding bytes: [UInt8]) throws(FingerprintDecodingError) {
        self = try Self.decode(bytes[...])
    }

    /// `init(decoding:)` over part of a larger buffer (a case's stored candidates), without a copy.
    public init(decoding bytes: ArraySlice<UInt8>) throws(FingerprintDecodingError) {
        self = try Self.decode(bytes)
    }

    private static func decode(_ bytes: ArraySlice<UInt8>) throws(FingerprintDecodingError) -> ReportFingerprint {
        guard bytes.count >= 16 else { throw .truncated }
        var reader = ByteReader(bytes)
        let version = reader.u8()!
        let width: Int
        switch version {
        case 1: width = 8
        case 2: width = 4
        case Self.formatVersion: width = 1
        default: throw .unsupportedVersion(version)
        }
        let n = Int(reader.u8()!)
        let k = Int(reader.u16()!)
        let seed = reader.u64()!
        let count = Int(reader.u32()!)
        guard n >= 1, k >= 1 else { throw .invalid("shingle size and permutations must be positive") }
        guard bytes.count == 16 + width * k else { throw .truncated }
        let mins: [UInt32]
        switch width {
        case 1:
            mins = bytes[reader.offset...].withUnsafeBufferPointer { src in
                [UInt32](unsafeUninitializedCapacity: k) { dst, n in
                    for i in 0 ..< k { dst[i] = UInt32(src[i]) }
                    n = k
                }
            }
        case 4: mins = (0 ..< k).map { _ in reader.u32()! }
        default: mins = (0 ..< k).map { _ in UInt32(truncatingIfNeeded: reader.u64()! >> 32) }
        }
        return ReportFingerprint(shingleSize: n, seed: seed, shingleCount: count, minHashes: mins,
                                 bits: width == 1 ? Self.storedBits : 32)
    }
}

/// Why stored fingerprint bytes could not be decoded.
public enum FingerprintDecodingError: Error, Hashable, Sendable {
    /// Fewer bytes than the header announces.
    case truncated
    /// A version byte this code does not know.
    case unsupportedVersion(UInt8)
    /// Inconsistent header values.
    case invalid(String)
}

/// Why two texts are (or are not) similar, for `DuplicateAssessment` details and logs.
public struct SimilarityExplanation: Hashable, Sendable {
    /// Exact Jaccard similarity of the shingle sets, |A∩B| / |A∪B|, in [0, 1].
    public var score: Double
    /// Overlap coefficient |A∩B| / min(|A|, |B|): high when one text is contained in the other.
    public var overlap: Double
    /// Number of shared shingles.
    public var sharedCount: Int
    /// Number of shingles in either text.
    public var unionCount: Int
    /// Up to `sampleSize` shared shingles, sorted.
    public var sharedSample: [String]

    /// Creates the value from its fields.
    public init(score: Double, overlap: Double, sharedCount: Int, unionCount: Int, sharedSample: [String]) {
        self.score = score
        self.overlap = overlap
        self.sharedCount = sharedCount
        self.unionCount = unionCount
        self.sharedSample = sharedSample
    }

    /// One-line summary, e.g. `jaccard 0.40 (4 of 10 shingles shared: 500, checkout, error, fail)`.
    public var summary: String {
        let s = twoDecimals(score)
        return "jaccard \(s) (\(sharedCount) of \(unionCount) shingles shared"
            + (sharedSample.isEmpty ? ")" : ": \(sharedSample.joined(separator: ", ")))")
    }
}

/// Text similarity: exact Jaccard over shingle sets. Two texts without any token (empty, only stop
/// words or punctuation) are not evidence of anything and score 0.
public enum Similarity {
    /// Jaccard similarity of two sets; 0 when both are empty.
    public static func jaccard<T: Hashable>(_ a: Set<T>, _ b: Set<T>) -> Double {
        guard !a.isEmpty || !b.isEmpty else { return 0 }
        let shared = a.intersection(b).count
        return Double(shared) / Double(a.count + b.count - shared)
    }

    /// The similarity score of two texts in [0, 1].
    public static func score(_ a: String, _ b: String, config: SimilarityConfig = .standard) -> Double {
        jaccard(config.shingles(a), config.shingles(b))
    }

    /// The score of two shingle sets with its explanation.
    public static func explain(_ a: Set<String>, _ b: Set<String>, sampleSize: Int = 8) -> SimilarityExplanation {
        let shared = a.intersection(b)
        let union = a.count + b.count - shared.count
        let score = union == 0 ? 0 : Double(shared.count) / Double(union)
        let smaller = min(a.count, b.count)
        let overlap = smaller == 0 ? 0 : Double(shared.count) / Double(smaller)
        return SimilarityExplanation(score: score, overlap: overlap, sharedCount: shared.count, unionCount: union,
                                     sharedSample: Array(shared.sorted().prefix(sampleSize)))
    }

    /// The score of two texts with its explanation.
    public static func explain(_ a: String, _ b: String, config: SimilarityConfig = .standard,
                               sampleSize: Int = 8) -> SimilarityExplanation {
        explain(config.shingles(a), config.shingles(b), sampleSize: sampleSize)
    }
}

/// `String(format: "%.2f", x)`, the way every score in an explanation is written, without
/// Foundation's formatter (a few microseconds per call on Linux, and a submission writes several).
/// Same text as printf for every value: the hundredths are `x * 100` rounded to nearest; the
/// only products whose rounding could differ from printf's (which rounds the exact binary value)
/// are exact ties, and those go to printf.
public func twoDecimals(_ x: Double) -> String {
    let scaled = (x * 100).magnitude
    guard x.isFinite, scaled < 1e15, scaled - scaled.rounded(.down) != 0.5 else {
        return String(format: "%.2f", x)
    }
    let hundredths = Int64(scaled.rounded(.toNearestOrAwayFromZero))
    let fraction = hundredths % 100
    return (x.sign == .minus ? "-" : "") + String(hundredths / 100) + (fraction < 10 ? ".0" : ".") + String(fraction)
}

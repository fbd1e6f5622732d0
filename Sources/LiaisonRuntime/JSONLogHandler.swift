import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line to standard error:
/// `{"time":"…","level":"info","logger":"intake","message":"…", …metadata}`.
///
/// Customer PII must never be put in log messages or metadata: log resource names and ids,
/// not contacts or free text.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: Sink

    /// Where lines go; a lock keeps concurrent lines whole.
    public final class Sink: @unchecked Sendable {
        private let lock = NSLock()
        private let fd: Int32
        public init(fd: Int32 = 2) { self.fd = fd }
        func write(_ line: [UInt8]) {
            lock.lock()
            defer { lock.unlock() }
            line.withUnsafeBytes { p in
                var off = 0
                while off < p.count {
                    let n = Foundation.write(fd, p.baseAddress! + off, p.count - off)
                    if n <= 0 { break }
                    off += n
                }
            }
        }
    }

    public init(label: String, level: Logger.Level, sink: Sink, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    /// Installs the handler for the whole process.
    public static func bootstrap(level: Logger.Level) {
        let sink = Sink()
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, sink: sink) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        var line = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(event.level.rawValue)\",\"logger\":"
        Self.appendJSONString(label, to: &line)
        line += ",\"message\":"
        Self.appendJSONString(event.message.description, to: &line)
        for key in all.keys.sorted() where !["time", "level", "logger", "message"].contains(key) {
            line += ","
            Self.appendJSONString(key, to: &line)
            line += ":"
            Self.appendValue(all[key]!, to: &line)
        }
        if event.level >= .error {
            line += ",\"source\":"
            Self.appendJSONString("\(event.file):\(event.line)", to: &line)
        }
        line += "}\n"
        sink.write(Array(line.utf8))
    }

    static func appendValue(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let s): appendJSONString(s, to: &out)
        case .stringConvertible(let c): appendJSONString(c.description, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                appendValue(v, to: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, k) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                appendJSONString(k, to: &out)
                out += ":"
                appendValue(d[k]!, to: &out)
            }
            out += "}"
        }
    }

    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
            tmv.tm_hour, tmv.tm_min, tmv.tm_sec, ts.tv_nsec / 1_000_000)
    }
}

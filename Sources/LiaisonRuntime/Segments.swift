import LiaisonAPI

extension Liaison_Common_V1_PlatformUsage {
    /// The canonical value of `liaison.common.v1.Dimension.DIMENSION_PLATFORM`: the enum value
    /// name without prefix, lower case ("android"); for PLATFORM_OTHER the platform name, lower
    /// case; "" when unspecified. Every service that matches segments uses this one spelling.
    public var canonicalPlatform: String {
        switch platform {
        case .web: "web"
        case .ios: "ios"
        case .android: "android"
        case .windows: "windows"
        case .macos: "macos"
        case .linux: "linux"
        case .api: "api"
        case .other: platformName.lowercased()
        default: ""
        }
    }
}

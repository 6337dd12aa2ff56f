// swift-tools-version:5.9
// The peerlink Swift package: the generated Swift API (Sources/PeerLink) over the Rust library,
// shipped as an XCFramework (build-xcframework.sh builds it for iOS devices, the iOS simulator
// and macOS).
import PackageDescription

let package = Package(
    name: "PeerLink",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "PeerLink", targets: ["PeerLink"]),
    ],
    targets: [
        // Static library + peerlink_ffiFFI.h + module map, one slice per platform.
        .binaryTarget(name: "peerlink_ffiFFI", path: "peerlink_ffiFFI.xcframework"),
        .target(
            name: "PeerLink",
            dependencies: ["peerlink_ffiFFI"],
            path: "Sources/PeerLink"
        ),
        .testTarget(
            name: "PeerLinkTests",
            dependencies: ["PeerLink"],
            path: "Tests/PeerLinkTests"
        ),
    ]
)

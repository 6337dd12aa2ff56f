// Standalone Gradle build of the peerlink Android library (AAR). Apps may instead include this
// directory as a module of their own build.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "peerlink"

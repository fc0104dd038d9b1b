#!/usr/bin/env bash
# Build and check a signed APK of the demo: one WebView Activity showing android_demo/web from the
# APK's assets, without Gradle (recipe and measurements: the project's shared android/README.md).
#   aapt package -> javac (Java 8, android.jar API 23) -> dx -> aapt add classes.dex -> zipalign -> apksigner
# then apksigner verify, zipalign -c -p 4, aapt dump badging and dexdump check the result.
# Needs Debian 12's aapt zipalign apksigner dexdump and a JDK, `npm ci` done in android_demo/ (the page's
# runtime files come from node_modules), and two Debian 11 packages (dx, android.jar): taken from
# $SHARED_ANDROID when set (CI: ../shared/android), else fetched with apt-get download through a
# private apt configuration (the system's sources untouched).
# Output: android_demo/android/build/edgespec-demo.apk (signed with a debug key made in build/ unless
# APK_KEYSTORE, APK_KEY_ALIAS and APK_KEY_PASS name another).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DEMO="$(dirname "$HERE")"
BUILD="$HERE/build"
DX_DEB=dalvik-exchange_10.0.0+r36-1_all.deb
DX_SHA=8fc128db7c27253d963eb9b33de79b197162a4749d2ba69019b2fd0664cbd7fe
JAR_DEB=libandroid-23-java_6.0.1+r72-6_all.deb
JAR_SHA=8af1b6df556971dda0a6da3536ea526a838e0c363afcdd454213d8bce94793e3

for tool in aapt zipalign apksigner dexdump javac keytool dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "build-apk.sh: '$tool' is missing (apt-get install aapt zipalign apksigner dexdump openjdk-17-jdk-headless)" >&2; exit 1; }
done
[ -d "$DEMO/node_modules/onnxruntime-web" ] || { echo "build-apk.sh: run 'npm ci' in $DEMO first (the page's runtime files come from node_modules)" >&2; exit 1; }

rm -rf "$BUILD"
mkdir -p "$BUILD/debs" "$BUILD/sdk" "$BUILD/assets" "$BUILD/classes"

# --- the two Debian 11 packages -----------------------------------------------------------------
fetch_debs() {
    local apt="$BUILD/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb http://deb.debian.org/debian bullseye main" > "$apt/sources.list"
    local opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o Debug::NoLocking=1)
    apt-get "${opts[@]}" update -qq
    (cd "$BUILD/debs" && apt-get "${opts[@]}" download dalvik-exchange=10.0.0+r36-1 libandroid-23-java=6.0.1+r72-6)
}
if [ -n "${SHARED_ANDROID:-}" ]; then
    cp "$SHARED_ANDROID/$DX_DEB" "$SHARED_ANDROID/$JAR_DEB" "$BUILD/debs/"
else
    echo "SHARED_ANDROID not set: fetching $DX_DEB and $JAR_DEB from Debian 11"
    fetch_debs
fi
(cd "$BUILD/debs" && printf '%s  %s\n%s  %s\n' "$DX_SHA" "$DX_DEB" "$JAR_SHA" "$JAR_DEB" | sha256sum -c --quiet)
dpkg-deb -x "$BUILD/debs/$DX_DEB" "$BUILD/sdk"
dpkg-deb -x "$BUILD/debs/$JAR_DEB" "$BUILD/sdk"
DX_JAR="$BUILD/sdk/usr/lib/android-sdk/build-tools/debian/lib/dx.jar"
ANDROID_JAR="$BUILD/sdk/usr/lib/android-sdk/platforms/android-23/android.jar"

# --- assets: the page, the engine and the runtime files it loads (the list serve.js serves) -----
cp -r "$DEMO/web" "$BUILD/assets/web"
rm "$BUILD/assets/web/serve.js"
cp -r "$DEMO/engine" "$BUILD/assets/engine"
(cd "$DEMO" && node --input-type=module -e '
import { VENDOR } from "./web/serve.js";
for (const [prefix, [dir, files]] of Object.entries(VENDOR)) for (const f of files) console.log(`${dir}${f} vendor/${prefix}${f}`);
') | while read -r src dst; do
    mkdir -p "$BUILD/assets/$(dirname "$dst")"
    cp "$src" "$BUILD/assets/$dst"
done

# --- compile, package, align, sign --------------------------------------------------------------
aapt package -f -M "$HERE/AndroidManifest.xml" -S "$HERE/res" -A "$BUILD/assets" -I "$ANDROID_JAR" \
    --min-sdk-version 21 --target-sdk-version 23 -F "$BUILD/unsigned.apk"
javac -nowarn -Xlint:-options -source 8 -target 8 -bootclasspath "$ANDROID_JAR" -d "$BUILD/classes" \
    $(find "$HERE/src" -name '*.java')
java -jar "$DX_JAR" --dex --min-sdk-version=21 --output="$BUILD/classes.dex" "$BUILD/classes"
(cd "$BUILD" && aapt add -f unsigned.apk classes.dex >/dev/null)
zipalign -f -p 4 "$BUILD/unsigned.apk" "$BUILD/aligned.apk"
if [ -z "${APK_KEYSTORE:-}" ]; then
    APK_KEYSTORE="$BUILD/debug.keystore" APK_KEY_ALIAS=debug APK_KEY_PASS=android
    keytool -genkeypair -keystore "$APK_KEYSTORE" -storepass "$APK_KEY_PASS" -keypass "$APK_KEY_PASS" \
        -alias "$APK_KEY_ALIAS" -keyalg RSA -keysize 2048 -validity 10000 \
        -dname "CN=edgespec demo debug" >/dev/null 2>&1
fi
apksigner sign --ks "$APK_KEYSTORE" --ks-key-alias "$APK_KEY_ALIAS" --ks-pass "pass:$APK_KEY_PASS" \
    --v4-signing-enabled false --out "$BUILD/edgespec-demo.apk" "$BUILD/aligned.apk"

# --- checks -------------------------------------------------------------------------------------
APK="$BUILD/edgespec-demo.apk"
apksigner verify --verbose "$APK" | grep -E "^Verifies|v2 scheme" 
zipalign -c -p 4 "$APK" && echo "zipalign -c -p 4: ok"
badging="$(aapt dump badging "$APK")"
echo "$badging" | grep -E "^package:|^sdkVersion|^targetSdkVersion|^launchable-activity|^application-label:"
# here-strings, not pipes: with pipefail, grep -q closing a pipe early fails the writer (SIGPIPE)
grep -q "launchable-activity: name='org.edgespec.demo.MainActivity'" <<< "$badging" \
    || { echo "build-apk.sh: the APK has no launchable MainActivity" >&2; exit 1; }
classes="$(dexdump "$BUILD/classes.dex")"
grep -q "Class descriptor  : 'Lorg/edgespec/demo/MainActivity;'" <<< "$classes" \
    || { echo "build-apk.sh: classes.dex lacks MainActivity" >&2; exit 1; }
for asset in assets/web/index.html assets/engine/engine.js assets/vendor/ort/ort.webgpu.bundle.min.mjs; do
    unzip -l "$APK" "$asset" >/dev/null || { echo "build-apk.sh: $asset missing from the APK" >&2; exit 1; }
done
echo "APK: $APK ($(du -h "$APK" | cut -f1))"

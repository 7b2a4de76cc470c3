using System.Net.Security;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Poold.Tls;

/// <summary>
/// OpenSSL keeps a read and a write record buffer (about 16.7 KB each) for every TLS connection for as long as it
/// lives, unless the connection is in <c>SSL_MODE_RELEASE_BUFFERS</c> (as nginx sets it), which gives them back
/// whenever they are empty: an idle TLS client then holds neither. .NET does not
/// set the mode and has no API for it, so this sets it on the connection's <c>SSL*</c>, which on Linux is the handle of
/// <see cref="SslStream"/>'s security context. Done only when every piece is as expected — the runtime's field by
/// that name holding its OpenSSL handle (<c>SafeSslHandle</c>), OpenSSL 3 in the process (<c>libssl.so.3</c>
/// mapped: the library .NET uses) — and otherwise skipped: the connection works the same, it just keeps its
/// buffers. Measured with bench/idle-clients.sh.
/// </summary>
internal static partial class TlsIdleMemory
{
    private const int SslCtrlMode = 33;
    private const long SslModeReleaseBuffers = 0x10;

    private static readonly FieldInfo? SecurityContext =
        typeof(SslStream).GetField("_securityContext", BindingFlags.Instance | BindingFlags.NonPublic);

    private static readonly Lazy<bool> Available = new(() =>
        OperatingSystem.IsLinux() && SecurityContext is not null && typeof(SafeHandle).IsAssignableFrom(SecurityContext.FieldType)
        && File.ReadLines("/proc/self/maps").Any(line => line.Contains("/libssl.so.3", StringComparison.Ordinal)));

    /// <summary>Puts a server-side connection whose handshake is done in release-buffers mode; false when that could not be done.</summary>
    public static bool ReleaseBuffersWhenIdle(SslStream stream)
    {
        if (!Available.Value || SecurityContext!.GetValue(stream) is not SafeHandle { IsInvalid: false, IsClosed: false } context
            || context.GetType().FullName != "Microsoft.Win32.SafeHandles.SafeSslHandle")
        {
            return false;
        }

        var added = false;
        try
        {
            context.DangerousAddRef(ref added);
            var mode = SslCtrl(context.DangerousGetHandle(), SslCtrlMode, SslModeReleaseBuffers, IntPtr.Zero);
            return (mode & SslModeReleaseBuffers) != 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            if (added)
            {
                context.DangerousRelease();
            }
        }
    }

    /// <summary>OpenSSL's <c>SSL_ctrl</c>: with <c>SSL_CTRL_MODE</c> it adds the bits to the connection's mode and returns the new mode.</summary>
    [LibraryImport("libssl.so.3", EntryPoint = "SSL_ctrl")]
    private static partial long SslCtrl(IntPtr ssl, int cmd, long larg, IntPtr parg);
}

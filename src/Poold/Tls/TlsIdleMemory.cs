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
/// buffers. The same call frees what .NET's two memory BIOs kept from the handshake. Measured with
/// bench/idle-clients.sh.
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

    /// <summary>
    /// Puts a server-side connection whose handshake is done in release-buffers mode (ModeSet false when that could not
    /// be done) and frees what its transport BIOs kept from the handshake (BuffersFreed: 0 to 2, see
    /// <see cref="EmptyTransportBuffer"/>). Call it while no read or write is under way on the stream.
    /// </summary>
    public static (bool ModeSet, int BuffersFreed) ReleaseBuffersWhenIdle(SslStream stream)
    {
        if (!Available.Value || SecurityContext!.GetValue(stream) is not SafeHandle { IsInvalid: false, IsClosed: false } context
            || context.GetType().FullName != "Microsoft.Win32.SafeHandles.SafeSslHandle")
        {
            return (false, 0);
        }

        var added = false;
        try
        {
            context.DangerousAddRef(ref added);
            var ssl = context.DangerousGetHandle();
            var mode = SslCtrl(ssl, SslCtrlMode, SslModeReleaseBuffers, IntPtr.Zero);
            var freed = (EmptyTransportBuffer(SslGetReadBio(ssl)) ? 1 : 0) + (EmptyTransportBuffer(SslGetWriteBio(ssl)) ? 1 : 0);
            return ((mode & SslModeReleaseBuffers) != 0, freed);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or ObjectDisposedException)
        {
            return (false, 0);
        }
        finally
        {
            if (added)
            {
                context.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// .NET moves the records between the socket and OpenSSL through two memory BIOs, and a memory BIO keeps the largest
    /// buffer it ever held: after the handshake, the server's first flight (certificate included, a few KB) in the
    /// write BIO and the ClientHello in the read one, for the life of the connection. Once the handshake is done and
    /// both are empty, each gets a fresh, empty buffer (<c>BIO_set_mem_buf</c>, which frees the old one); one that is
    /// not empty, or not a memory BIO, is left as it is.
    /// </summary>
    private static bool EmptyTransportBuffer(IntPtr bio)
    {
        if (bio == IntPtr.Zero || BioMethodType(bio) != BioTypeMem || BioCtrl(bio, BioCtrlPending, 0, IntPtr.Zero) != 0)
        {
            return false;
        }

        var buffer = BufMemNew();
        if (buffer == IntPtr.Zero)
        {
            return false;
        }

        if (BioCtrl(bio, BioSetBufMem, BioClose, buffer) <= 0)
        {
            BufMemFree(buffer);
            return false;
        }

        return true;
    }

    private const int BioTypeMem = 1 | 0x0400;
    private const int BioCtrlPending = 10;
    private const int BioSetBufMem = 114;
    private const long BioClose = 1;

    [LibraryImport("libssl.so.3", EntryPoint = "SSL_get_rbio")]
    private static partial IntPtr SslGetReadBio(IntPtr ssl);

    [LibraryImport("libssl.so.3", EntryPoint = "SSL_get_wbio")]
    private static partial IntPtr SslGetWriteBio(IntPtr ssl);

    [LibraryImport("libcrypto.so.3", EntryPoint = "BIO_method_type")]
    private static partial int BioMethodType(IntPtr bio);

    [LibraryImport("libcrypto.so.3", EntryPoint = "BIO_ctrl")]
    private static partial long BioCtrl(IntPtr bio, int cmd, long larg, IntPtr parg);

    [LibraryImport("libcrypto.so.3", EntryPoint = "BUF_MEM_new")]
    private static partial IntPtr BufMemNew();

    [LibraryImport("libcrypto.so.3", EntryPoint = "BUF_MEM_free")]
    private static partial void BufMemFree(IntPtr buffer);

    /// <summary>OpenSSL's <c>SSL_ctrl</c>: with <c>SSL_CTRL_MODE</c> it adds the bits to the connection's mode and returns the new mode.</summary>
    [LibraryImport("libssl.so.3", EntryPoint = "SSL_ctrl")]
    private static partial long SslCtrl(IntPtr ssl, int cmd, long larg, IntPtr parg);
}

using System.Runtime.InteropServices;

namespace Poold.Hosting;

/// <summary>The one libc call .NET has no API for: sending a chosen signal to another process (<c>poold stop</c>).</summary>
internal static partial class NativeMethods
{
    public const int SigHup = 1;
    public const int SigInt = 2;
    public const int SigQuit = 3;
    public const int SigTerm = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Kill(int pid, int signal);
}

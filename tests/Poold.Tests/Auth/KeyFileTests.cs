using Poold.Auth;

namespace Poold.Tests.Auth;

public class KeyFileTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("poold-key-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private string Write(string content, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite)
    {
        var path = Path.Combine(_dir, "key");
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    [TestCase("mysecretkey\n", "mysecretkey")]
    [TestCase("mysecretkey", "mysecretkey")]
    [TestCase("k3y\r\n", "k3y\r")]
    [TestCase("\nkey-on-second-line\n", "")]
    [TestCase("first line key\nsecond line\n", "first line key")]
    public void Read_TakesTheFirstLineAsPgpoolDoes(string content, string key)
    {
        Assert.That(KeyFile.Read(Write(content)).Reveal(), Is.EqualTo(key));
    }

    [Test]
    public void Read_CutsLongKeysAt255Bytes()
    {
        Assert.That(KeyFile.Read(Write(new string('K', 300) + "\n")).Reveal(), Is.EqualTo(new string('K', 255)));
    }

    [Test]
    public void Read_GroupReadableFile_IsRefusedWithChmodAdvice()
    {
        var path = Write("k\n", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        var e = Assert.Throws<KeyFileException>(() => KeyFile.Read(path));
        Assert.That(e!.Message, Does.Contain("chmod 600").And.Contain(path));
    }

    [Test]
    public void Read_MissingOrEmptyFile_SaysSo()
    {
        Assert.That(() => KeyFile.Read(Path.Combine(_dir, "absent")), Throws.TypeOf<KeyFileException>().With.Message.Contain("does not exist"));
        Assert.That(() => KeyFile.Read(Write("")), Throws.TypeOf<KeyFileException>().With.Message.Contain("empty"));
    }

    [Test]
    public void Locate_PrefersOptionThenEnvironmentThenHome()
    {
        var saved = (Environment.GetEnvironmentVariable(KeyFile.EnvironmentVariable), Environment.GetEnvironmentVariable("HOME"));
        try
        {
            Environment.SetEnvironmentVariable(KeyFile.EnvironmentVariable, "/from/env");
            Environment.SetEnvironmentVariable("HOME", "/home/someone");
            Assert.That(KeyFile.Locate("/from/option"), Is.EqualTo("/from/option"));
            Assert.That(KeyFile.Locate(null), Is.EqualTo("/from/env"));
            Environment.SetEnvironmentVariable(KeyFile.EnvironmentVariable, null);
            Assert.That(KeyFile.Locate(null), Is.EqualTo("/home/someone/.pgpoolkey"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(KeyFile.EnvironmentVariable, saved.Item1);
            Environment.SetEnvironmentVariable("HOME", saved.Item2);
        }
    }
}

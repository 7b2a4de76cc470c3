using Poold.Protocol;

namespace Poold.Tests.Protocol;

public class MessageBufferTests
{
    [Test]
    public void ReleaseStorage_DropsTheBytes_AndTheBufferStillWritesWholeMessages()
    {
        var buffer = new MessageBuffer();
        buffer.ParameterStatus("application_name", new string('a', 600));
        Assert.That(buffer.Capacity, Is.GreaterThanOrEqualTo(600));

        buffer.ReleaseStorage();

        Assert.That(buffer.Capacity, Is.Zero);
        Assert.That(buffer.Length, Is.Zero);

        buffer.Error("FATAL", "57P01", "terminating connection");
        buffer.Empty(BackendCode.ParseComplete);
        var bytes = buffer.Written.ToArray();
        Assert.That(bytes[0], Is.EqualTo((byte)'E'));
        var errorLength = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(1));
        Assert.That(bytes, Has.Length.EqualTo(1 + errorLength + 5));
        Assert.That(bytes[1 + errorLength], Is.EqualTo((byte)BackendCode.ParseComplete));
        Assert.That(System.Text.Encoding.UTF8.GetString(bytes), Does.Contain("57P01").And.Contain("terminating connection"));
    }
}
